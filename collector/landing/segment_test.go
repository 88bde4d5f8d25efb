package landing_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/landing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenRecords are the records of testdata/segment_v1.seg. Payloads are
// opaque to the segment format: any bytes will do.
var goldenRecords = []landing.SegmentRecord{
	{ReceivedAt: time.Date(2026, 11, 24, 12, 0, 0, 123456000, time.UTC), Source: "mqtt", Payload: []byte{0x01, 0x02, 0x03}},
	{ReceivedAt: time.Date(2026, 11, 24, 12, 0, 1, 0, time.UTC), Source: "iothub", Payload: []byte(`[{"deviceId":"pi-2","seq":7}]`)},
	{ReceivedAt: time.UnixMicro(0).UTC(), Source: "", Payload: nil},
}

func TestSegmentGolden(t *testing.T) {
	path := filepath.Join("testdata", "segment_v1.seg")
	enc := landing.EncodeSegment(goldenRecords)
	if *update {
		if err := os.WriteFile(path, enc, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, want) {
		t.Fatalf("EncodeSegment = %x\nwant (%s) %x", enc, path, want)
	}
	got, err := landing.DecodeSegment(want)
	if err != nil {
		t.Fatal(err)
	}
	if !recordsEqual(got, goldenRecords) {
		t.Fatalf("DecodeSegment = %+v, want %+v", got, goldenRecords)
	}
}

func recordsEqual(a, b []landing.SegmentRecord) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].ReceivedAt.Equal(b[i].ReceivedAt) || a[i].Source != b[i].Source || !bytes.Equal(a[i].Payload, b[i].Payload) {
			return false
		}
	}
	return true
}

// A damaged segment yields the records before the damage and an error
// naming where it is.
func TestDecodeSegmentDamaged(t *testing.T) {
	good := landing.EncodeSegment(goldenRecords)
	second := len(landing.EncodeSegment(goldenRecords[:1])) // offset of record 1
	flip := func(i int) []byte {
		d := bytes.Clone(good)
		d[i] ^= 0x40
		return d
	}
	cases := []struct {
		desc    string
		data    []byte
		keep    int    // records returned
		offset  int    // of the failure
		reason  string // in the error
		noMagic bool
	}{
		{desc: "empty", data: nil, noMagic: true, reason: "header"},
		{desc: "other magic", data: []byte("PLSD1\x01"), noMagic: true, reason: "header"},
		{desc: "version 2", data: []byte("PLSEG\x02"), noMagic: true, reason: "version 2"},
		{desc: "truncated in record 1", data: good[:second+5], keep: 1, offset: second, reason: "truncated"},
		{desc: "bit flip in record 1", data: flip(second + 4), keep: 1, offset: second, reason: "checksum"},
		{desc: "bit flip in record 0", data: flip(8), keep: 0, offset: 6, reason: "checksum"},
		{desc: "huge length", data: append(bytes.Clone(good[:second]), 0xff, 0xff, 0xff, 0xff, 0x0f), keep: 1, offset: second, reason: "exceeds"},
		{desc: "bad varint", data: append(bytes.Clone(good[:second]), 0xff), keep: 1, offset: second, reason: "length"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			recs, err := landing.DecodeSegment(tc.data)
			var se *landing.SegmentError
			if !errors.As(err, &se) || !errors.Is(err, landing.ErrSegmentCorrupt) {
				t.Fatalf("error %v, want a *SegmentError", err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("error %q does not say %q", err, tc.reason)
			}
			if len(recs) != tc.keep || !recordsEqual(recs, goldenRecords[:tc.keep]) {
				t.Fatalf("kept %d records, want %d", len(recs), tc.keep)
			}
			if !tc.noMagic && (se.Offset != tc.offset || se.Record != tc.keep) {
				t.Fatalf("failure at offset %d record %d, want %d, %d", se.Offset, se.Record, tc.offset, tc.keep)
			}
		})
	}
}

func TestSegmentName(t *testing.T) {
	at := time.Date(2026, 11, 24, 7, 59, 0, 0, time.FixedZone("x", 3600))
	name := landing.SegmentName(at, "0123456789abcdef", 42)
	if want := "landing/-seg/2026-11-24/06/0123456789abcdef-000000000000002a.seg"; name != want {
		t.Fatalf("SegmentName = %s, want %s", name, want)
	}
	if inst, n, ok := landing.ParseSegmentName(name); !ok || inst != "0123456789abcdef" || n != 42 {
		t.Fatalf("ParseSegmentName(%s) = %s, %d, %v", name, inst, n, ok)
	}
	if h, ok := landing.SegmentHour(name); !ok || !h.Equal(time.Date(2026, 11, 24, 6, 0, 0, 0, time.UTC)) {
		t.Fatalf("SegmentHour(%s) = %v, %v", name, h, ok)
	}
	for _, bad := range []string{
		"landing/-seg/2026-11-24/06/0123456789ABCDEF-000000000000002a.seg",
		"landing/-seg/2026-11-24/06/0123456789abcdef-000000000000002A.seg",
		"landing/-seg/2026-11-24/24/0123456789abcdef-000000000000002a.seg",
		"landing/-seg/2026-13-24/06/0123456789abcdef-000000000000002a.seg",
		"landing/-seg/2026-11-24/06/0123456789abcdef-2a.seg",
		"landing/-seg/2026-11-24/06/0123456789abcdef-000000000000002a.bin",
		"landing/-seg/06/0123456789abcdef-000000000000002a.seg",
		"landing/pi-1/00000000deadbeef/00000000000000000001.bin",
	} {
		if _, _, ok := landing.ParseSegmentName(bad); ok {
			t.Errorf("ParseSegmentName(%s) accepted", bad)
		}
		if _, ok := landing.SegmentHour(bad); ok {
			t.Errorf("SegmentHour(%s) accepted", bad)
		}
	}
}

// FuzzParseSegmentName: a name from the lake (untrusted) that parses is
// exactly the name SegmentName gives its hour, instance and counter.
func FuzzParseSegmentName(f *testing.F) {
	f.Add("landing/-seg/2026-11-24/06/0123456789abcdef-000000000000002a.seg")
	f.Add("landing/-seg/2026-02-30/06/0123456789abcdef-000000000000002a.seg")
	f.Add("landing/-seg/2026-11-24/06/../0123456789abcdef-000000000000002a.seg")
	f.Add("landing/pi-1/00000000deadbeef/00000000000000000001.bin")
	f.Fuzz(func(t *testing.T, name string) {
		inst, n, ok := landing.ParseSegmentName(name)
		hour, hok := landing.SegmentHour(name)
		if ok != hok {
			t.Fatalf("%q: ParseSegmentName ok %v, SegmentHour ok %v", name, ok, hok)
		}
		if !ok {
			return
		}
		if !landing.ValidInstance(inst) || hour.Location() != time.UTC || !hour.Equal(hour.Truncate(time.Hour)) {
			t.Fatalf("%q: instance %q hour %v", name, inst, hour)
		}
		if got := landing.SegmentName(hour, inst, n); got != name {
			t.Fatalf("%q parsed as %v %s %d, which SegmentName writes as %q", name, hour, inst, n, got)
		}
	})
}

// FuzzDecodeSegment: any bytes decode without a panic, to records that
// encode back to a prefix of the input; and encoding what was decoded then
// decoding it again gives the same records.
func FuzzDecodeSegment(f *testing.F) {
	f.Add(landing.EncodeSegment(goldenRecords))
	f.Add(landing.EncodeSegment(nil))
	b, _ := wire.NewEncoder(wire.Binary).Append(nil, batch("pi-1", 1, 40))
	f.Add(landing.EncodeSegment([]landing.SegmentRecord{{ReceivedAt: time.Now(), Source: "mqtt", Payload: b}}))
	f.Add([]byte("PLSEG\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := landing.DecodeSegment(data)
		var se *landing.SegmentError
		if err != nil && !errors.As(err, &se) {
			t.Fatalf("error %v is not a *SegmentError", err)
		}
		enc := landing.EncodeSegment(recs)
		if len(recs) > 0 && !bytes.HasPrefix(data, enc) {
			t.Fatalf("re-encoding the decoded records is not a prefix of the input")
		}
		again, err := landing.DecodeSegment(enc)
		if err != nil || !recordsEqual(again, recs) {
			t.Fatalf("round trip: %v, equal %v", err, reflect.DeepEqual(again, recs))
		}
	})
}

func TestDecodeSegmentOverlongLength(t *testing.T) {
	good := landing.EncodeSegment(goldenRecords[:1])
	// Record 0's length (0x10) spelled in two bytes: same value, other bytes.
	data := append([]byte("PLSEG\x01\x90\x00"), good[7:]...)
	if recs, err := landing.DecodeSegment(data); err == nil || len(recs) != 0 {
		t.Fatalf("overlong length accepted: %d records, %v", len(recs), err)
	}
}
