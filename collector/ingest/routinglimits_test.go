package ingest_test

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/hamba/avro/v2/ocf"

	"github.com/pilake/pilake/collector/ingest"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
)

// rawOCF builds an Avro object container file by hand, with any schema and
// codec, and one block of count records holding data (already compressed).
func rawOCF(schema, codec string, count int64, data []byte) []byte {
	var b []byte
	long := func(v int64) { b = binary.AppendVarint(b, v) }
	str := func(s string) { long(int64(len(s))); b = append(b, s...) }
	b = append(b, 'O', 'b', 'j', 1)
	long(2)
	str("avro.schema")
	str(schema)
	str("avro.codec")
	str(codec)
	long(0)
	sync := bytes.Repeat([]byte{0x5a}, 16)
	b = append(b, sync...)
	long(count)
	long(int64(len(data)))
	b = append(b, data...)
	return append(b, sync...)
}

// allocatedMiB is the bytes allocated so far (cumulative): a parse's
// allocations count even if they are garbage by the time it returns.
func allocatedMiB() float64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.TotalAlloc) / (1 << 20)
}

// TestHostileRoutingFiles: issue 16 items 8 and 9. Each file is refused
// with ErrRoutingFile (no crash, no large allocation).
func TestHostileRoutingFiles(t *testing.T) {
	manyKeys := map[string]string{}
	for i := range 200_000 {
		manyKeys[fmt.Sprintf("k%d", i)] = ""
	}
	var mapBomb bytes.Buffer
	enc, err := ocf.NewEncoder(ingest.RoutingSchema, &mapBomb, ocf.WithCodec(ocf.Null))
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.Encode(avroMessage{EnqueuedTimeUtc: "x", Properties: manyKeys, SystemProperties: sysProps("pi-1", false), Body: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	enc.Close()
	var deflated bytes.Buffer
	fw, _ := flate.NewWriter(&deflated, flate.BestCompression)
	fw.Write(make([]byte, 64<<20))
	fw.Close()

	for _, tc := range []struct {
		desc   string
		data   []byte
		limit  bool    // ErrRoutingLimit too
		maxMiB float64 // allocation bound [8]
	}{
		{"recursive schema (fatal stack overflow in hamba/avro)", rawOCF(`{"type":"record","name":"R","fields":[{"name":"x","type":"R"}]}`, "null", 1, bytes.Repeat([]byte{2}, 600)), false, 0},
		{"mutually recursive schema", rawOCF(`{"type":"record","name":"A","fields":[{"name":"b","type":{"type":"record","name":"B","fields":[{"name":"a","type":["null","A"]}]}}]}`, "null", 1, bytes.Repeat([]byte{2}, 600)), false, 0},
		{"schema nested 100,000 deep", rawOCF(strings.Repeat(`{"type":"array","items":`, 100_000)+`"int"`+strings.Repeat("}", 100_000), "null", 1, []byte{0}), false, 0},
		{"schema nested 40 records deep", rawOCF(nestedRecords(40), "null", 1, []byte{0}), false, 0},
		{"map of 200,000 keys", mapBomb.Bytes(), true, 0},
		// Measured before it is inflated: nothing allocated (158 MiB
		// before the limit).
		{"64 MiB deflate bomb", rawOCF(ingest.RoutingSchema, "deflate", 1, deflated.Bytes()), true, 0},
		{"union index out of range", rawOCF(ingest.RoutingSchema, "null", 1, []byte{2, 'x', 0, 0, 9}), false, 0},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			alloc0 := allocatedMiB()
			_, err := parseAll(tc.data)
			if !errors.Is(err, ingest.ErrRoutingFile) {
				t.Fatalf("err %v, want ErrRoutingFile", err)
			}
			if tc.limit && !errors.Is(err, ingest.ErrRoutingLimit) {
				t.Errorf("err %v, want ErrRoutingLimit", err)
			}
			a := allocatedMiB() - alloc0
			t.Logf("allocated %.1f MiB", a)
			if tc.maxMiB == 0 {
				tc.maxMiB = 8
			}
			if a > tc.maxMiB {
				t.Errorf("parsing allocated %.0f MiB", a)
			}
		})
	}
}

func nestedRecords(n int) string {
	s := `"int"`
	for i := range n {
		s = fmt.Sprintf(`{"type":"record","name":"R%d","fields":[{"name":"f","type":%s}]}`, i, s)
	}
	return s
}

// TestRoutingLimitsQuarantineAndCheckpoint: a file beyond a limit, or with
// a recursive schema, is quarantined and checkpointed (no crash loop, no
// retry), counted, and the good files beside it land.
func TestRoutingLimitsQuarantineAndCheckpoint(t *testing.T) {
	ctx := t.Context()
	files, lk := lake.NewMemory(), lake.NewMemory()
	ld, err := landing.New(landing.Options{Lake: lk, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	handler, quarantine := routingLanding(ld, lk)
	good := avroFile(t, ocf.Null, sampleMessages(t, 7, 1))
	big := avroFile(t, ocf.Null, append(sampleMessages(t, 8, 1), sampleMessages(t, 8, 3)...))
	recursive := rawOCF(`{"type":"record","name":"R","fields":[{"name":"x","type":"R"}]}`, "null", 1, bytes.Repeat([]byte{2}, 600))
	for name, data := range map[string][]byte{"myhub/0/a.avro": good, "myhub/0/b.avro": big, "myhub/0/c.avro": recursive} {
		if err := files.Put(ctx, name, data); err != nil {
			t.Fatal(err)
		}
	}
	lim := ingest.RoutingLimits{MaxFileBytes: int64(len(good)) + 10}
	r, err := ingest.NewRouting(ctx, ingest.RoutingOptions{Files: files, Prefix: "myhub/", State: lk, Handler: handler,
		Quarantine: quarantine, Logger: quiet, Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.Poll(ctx); err != nil || n != 3 {
		t.Fatalf("Poll = %d, %v; want 3 files processed", n, err)
	}
	if f, _, q := r.Stats(); f != 3 || q != 2 || r.Limited() != 1 {
		t.Errorf("files %d, quarantined %d, limited %d; want 3, 2, 1", f, q, r.Limited())
	}
	if n := ld.Stats().Batches.Load(); n != 4 {
		t.Errorf("%d batches landed, want the good file's 4", n)
	}
	// Checkpointed: a new Routing (a restart) does not take them up again.
	r2, err := ingest.NewRouting(ctx, ingest.RoutingOptions{Files: files, Prefix: "myhub/", State: lk, Handler: handler,
		Quarantine: quarantine, Logger: quiet, Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r2.Poll(ctx); err != nil || n != 0 {
		t.Errorf("after a restart Poll = %d, %v; want nothing to do", n, err)
	}
}
