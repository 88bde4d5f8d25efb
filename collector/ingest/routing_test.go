package ingest_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2/ocf"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/ingest"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/scripts/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// avroMessage is IoT Hub's routing record, as its routing endpoint writes it.
type avroMessage struct {
	EnqueuedTimeUtc  string            `avro:"EnqueuedTimeUtc"`
	Properties       map[string]string `avro:"Properties"`
	SystemProperties map[string]string `avro:"SystemProperties"`
	Body             []byte            `avro:"Body"`
}

type routed struct {
	device string
	body   []byte
	json   bool // JSON message with contentType application/json, utf-8
}

func sysProps(device string, jsonBody bool) map[string]string {
	p := map[string]string{"connectionDeviceId": device, "connectionAuthMethod": `{"scope":"device","type":"sas","issuer":"iothub"}`,
		"connectionDeviceGenerationId": "638000000000000000", "enqueuedTime": "2026-11-24T12:00:01.1230000Z"}
	if jsonBody {
		p["contentType"], p["contentEncoding"] = "application/json", "utf-8"
	}
	return p
}

// avroFile writes an IoT Hub routing file in Avro (the default encoding).
func avroFile(t testing.TB, codec ocf.CodecName, msgs []routed) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := ocf.NewEncoder(ingest.RoutingSchema, &buf, ocf.WithCodec(codec), ocf.WithBlockLength(3))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := enc.Encode(avroMessage{EnqueuedTimeUtc: "2026-11-24T12:00:01.1230000Z",
			Properties: map[string]string{"pilake-encoding": "pilake-v1"}, SystemProperties: sysProps(m.device, m.json), Body: m.body}); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// jsonFile writes an IoT Hub routing file in JSON: one object per line, Body
// base64 unless the message was JSON with contentType/contentEncoding set.
func jsonFile(t testing.TB, msgs []routed) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, m := range msgs {
		rec := map[string]any{"EnqueuedTimeUtc": "2026-11-24T12:00:01.1230000Z", "Properties": map[string]string{},
			"SystemProperties": sysProps(m.device, m.json)}
		if m.json {
			rec["Body"] = json.RawMessage(m.body)
		} else {
			rec["Body"] = base64.StdEncoding.EncodeToString(m.body)
		}
		line, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

func sampleMessages(t testing.TB, boot uint64, seq0 uint64) []routed {
	return []routed{
		{device: "pi-1", body: encodeBatch(t, wire.Binary, "pi-1", boot, seq0, 400)},
		{device: "pi-2", body: encodeBatch(t, wire.BinaryZstd, "pi-2", boot, seq0, 400)},
		{device: "pi-3", body: encodeBatch(t, wire.JSON, "pi-3", boot, seq0, 3), json: true},
		{device: "pi-1", body: encodeBatch(t, wire.Binary, "pi-1", boot, seq0+1, 400)},
	}
}

func parseAll(data []byte) ([]ingest.RoutingRecord, error) {
	var out []ingest.RoutingRecord
	err := ingest.ParseRoutingFile(data, func(r ingest.RoutingRecord) error {
		r.Body = append([]byte(nil), r.Body...)
		out = append(out, r)
		return nil
	})
	return out, err
}

func TestParseRoutingFile(t *testing.T) {
	msgs := sampleMessages(t, 0xabc, 1)
	good := avroFile(t, ocf.Null, msgs)
	cases := []struct {
		desc     string
		data     []byte
		want     int  // records passed to fn
		wantErr  bool // ErrRoutingFile
		badIndex int  // index of a record with Err, or -1
	}{
		{"avro null codec", good, 4, false, -1},
		{"avro deflate", avroFile(t, ocf.Deflate, msgs), 4, false, -1},
		{"avro snappy", avroFile(t, ocf.Snappy, msgs), 4, false, -1},
		{"avro zstd", avroFile(t, ocf.ZStandard, msgs), 4, false, -1},
		{"json base64 and plain bodies", jsonFile(t, msgs), 4, false, -1},
		{"avro record without body", avroFile(t, ocf.Null, []routed{{device: "pi-1"}}), 1, false, 0},
		{"avro record without device", avroFile(t, ocf.Null, []routed{{body: msgs[0].body}}), 1, false, 0},
		{"json line broken", append(jsonFile(t, msgs[:1]), []byte("{\"Body\":\n")...), 2, false, 1},
		{"json body not base64", []byte(`{"EnqueuedTimeUtc":"2026-11-24T12:00:01Z","SystemProperties":{"connectionDeviceId":"pi-1"},"Body":"%%%"}` + "\n"), 1, false, 0},
		{"truncated avro", good[:len(good)-40], 3, true, -1},
		{"avro header only", good[:20], 0, true, -1},
		{"not a routing file", []byte("\x00\x01\x02 hello"), 1, false, 0},
		{"empty", nil, 0, false, -1},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			recs, err := parseAll(tc.data)
			if tc.wantErr != errors.Is(err, ingest.ErrRoutingFile) || (!tc.wantErr && err != nil) {
				t.Fatalf("err = %v, want ErrRoutingFile %v", err, tc.wantErr)
			}
			if len(recs) != tc.want {
				t.Fatalf("%d records, want %d", len(recs), tc.want)
			}
			for i, r := range recs {
				if (r.Err != nil) != (i == tc.badIndex) {
					t.Fatalf("record %d: Err = %v", i, r.Err)
				}
				if r.Err != nil || i >= len(msgs) || tc.badIndex >= 0 {
					continue
				}
				if r.DeviceID != msgs[i].device || !bytes.Equal(r.Body, msgs[i].body) || r.EnqueuedTime.IsZero() {
					t.Fatalf("record %d: device %q, body equal %v, enqueued %v", i, r.DeviceID, bytes.Equal(r.Body, msgs[i].body), r.EnqueuedTime)
				}
			}
		})
	}
}

// TestRoutingGolden keeps routing files in testdata/ (the fuzzer's seeds too).
func TestRoutingGolden(t *testing.T) {
	files := map[string]func() []byte{
		"routing/hub.avro":         func() []byte { return avroFile(t, ocf.Null, sampleMessages(t, 0x5eed, 1)) },
		"routing/hub-deflate.avro": func() []byte { return avroFile(t, ocf.Deflate, sampleMessages(t, 0x5eed, 1)) },
		"routing/hub.json":         func() []byte { return jsonFile(t, sampleMessages(t, 0x5eed, 1)) },
	}
	for name, gen := range files {
		p := filepath.Join("testdata", name)
		if *update {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, gen(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v (run with -update to create)", err)
		}
		recs, err := parseAll(data)
		if err != nil || len(recs) != 4 {
			t.Fatalf("%s: %d records, %v", name, len(recs), err)
		}
		for _, r := range recs {
			var b wire.Batch
			if r.Err != nil || wire.Decode(r.Body, &b) != nil || b.DeviceID != r.DeviceID {
				t.Fatalf("%s record %d: %v, body does not decode as device %s's batch", name, r.Index, r.Err, r.DeviceID)
			}
		}
	}
}

func FuzzParseRoutingFile(f *testing.F) {
	for _, name := range []string{"routing/hub.avro", "routing/hub-deflate.avro", "routing/hub.json"} {
		if data, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("Obj\x01\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		err := ingest.ParseRoutingFile(data, func(r ingest.RoutingRecord) error {
			if r.Index != n {
				t.Fatalf("record index %d, want %d", r.Index, n)
			}
			n++
			if r.Err == nil && (r.DeviceID == "" || r.Body == nil) {
				t.Fatalf("record %d without Err lacks device or body", r.Index)
			}
			return nil
		})
		if err != nil && !errors.Is(err, ingest.ErrRoutingFile) {
			t.Fatalf("error not wrapping ErrRoutingFile: %v", err)
		}
	})
}

// routingLanding wires a Routing to a real Lander, the way the collector does.
func routingLanding(ld *landing.Lander, lk lake.Lake) (ingest.RoutingHandler, func(context.Context, string, []byte, string) error) {
	handler := func(ctx context.Context, file string, rec ingest.RoutingRecord) error {
		topic := fmt.Sprintf("%s#%d", file, rec.Index)
		if rec.Err != nil {
			return landing.QuarantineRecord(ctx, lk, rec.Body, landing.Record{Reason: rec.Err.Error(), Kind: landing.KindEnvelope, Source: "iothub", Topic: topic})
		}
		_, err := ld.Land(ctx, landing.Message{Data: rec.Body, Source: "iothub", Topic: topic, Device: rec.DeviceID, ReceivedAt: rec.EnqueuedTime})
		return err
	}
	quarantine := func(ctx context.Context, file string, data []byte, reason string) error {
		return landing.QuarantineRecord(ctx, lk, data, landing.Record{Reason: reason, Kind: landing.KindEnvelope, Source: "iothub", Topic: file})
	}
	return handler, quarantine
}

func TestRoutingAzurite(t *testing.T) {
	az := testenv.AzuriteBlob(t)
	ctx := t.Context()
	files, err := lake.NewAzure(ctx, lake.AzureOptions{ConnectionString: az.ConnectionString(), Container: fmt.Sprintf("iothub-%d", rand.Uint32())})
	if err != nil {
		t.Fatal(err)
	}
	lk, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ld, err := landing.New(landing.Options{Lake: lk, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	handler, quarantine := routingLanding(ld, lk)
	newRouting := func() *ingest.Routing {
		r, err := ingest.NewRouting(ctx, ingest.RoutingOptions{Files: files, Prefix: "myhub/", State: lk, Handler: handler, Quarantine: quarantine, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	put := func(name string, data []byte) {
		t.Helper()
		if err := files.Put(ctx, name, data); err != nil {
			t.Fatal(err)
		}
	}
	poll := func(r *ingest.Routing, want int) {
		t.Helper()
		n, err := r.Poll(ctx)
		if err != nil || n != want {
			t.Fatalf("Poll = %d, %v; want %d files", n, err, want)
		}
	}
	// IoT Hub's default names: {iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}.
	put("myhub/0/2026/11/24/12/00.avro", avroFile(t, ocf.Deflate, sampleMessages(t, 1, 1)))
	put("myhub/1/2026/11/24/12/00.json", jsonFile(t, sampleMessages(t, 2, 1)))
	put("otherhub/0/2026/11/24/12/00.avro", avroFile(t, ocf.Null, sampleMessages(t, 3, 1)))
	r := newRouting()
	poll(r, 2)
	if got := ld.Stats().Batches.Load(); got != 8 {
		t.Fatalf("landed %d batches, want 8", got)
	}
	poll(r, 0) // nothing new
	put("myhub/0/2026/11/24/12/01.avro", avroFile(t, ocf.Null, sampleMessages(t, 1, 3)))
	put("myhub/0/2026/11/24/12/02.avro", []byte("Obj\x01 this is not avro"))
	poll(r, 2)
	if got := ld.Stats().Batches.Load(); got != 12 {
		t.Fatalf("landed %d batches, want 12", got)
	}
	_, _, q := r.Stats()
	if q != 1 {
		t.Fatalf("quarantined %d files, want 1", q)
	}
	// A restart resumes from the checkpoint: nothing is processed twice.
	poll(newRouting(), 0)
	// A file that grew is processed again; its old records are duplicates.
	put("myhub/1/2026/11/24/12/00.json", append(jsonFile(t, sampleMessages(t, 2, 1)), jsonFile(t, sampleMessages(t, 2, 9))...))
	poll(newRouting(), 1)
	if got, dup := ld.Stats().Batches.Load(), ld.Stats().Duplicates.Load(); got != 16 || dup != 4 {
		t.Fatalf("landed %d, duplicates %d; want 16 and 4", got, dup)
	}
	// pi-3's JSON batches are in landing/ as received, each once.
	segs, err := lk.List(ctx, landing.SegmentDir)
	if err != nil {
		t.Fatal(err)
	}
	pi3 := map[string]bool{}
	for _, o := range segs {
		data, err := lk.Get(ctx, o.Name)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := landing.DecodeSegment(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			var b wire.Batch
			if err := wire.Decode(r.Payload, &b); err != nil {
				t.Fatal(err)
			}
			if b.DeviceID != "pi-3" {
				continue
			}
			if pi3[b.Key()] || !strings.HasPrefix(string(r.Payload), "[") || r.Source != "iothub" {
				t.Fatalf("pi-3 batch %s: twice %v, source %q, payload %.20q", b.Key(), pi3[b.Key()], r.Source, r.Payload)
			}
			pi3[b.Key()] = true
		}
	}
	if len(pi3) != 4 {
		t.Fatalf("pi-3's JSON batches in landing: %v", pi3)
	}
	_ = time.Second
}

// The records of a file are landed concurrently, so they share landing
// segments; a record that fails to land fails the file, which the next Poll
// processes again (its landed records then count as duplicates).
func TestRoutingConcurrentRecords(t *testing.T) {
	ctx := t.Context()
	files := lake.NewMemory()
	lk := lake.NewMemory()
	ld, err := landing.New(landing.Options{Lake: lk, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	handler, quarantine := routingLanding(ld, lk)
	var failAt atomic.Int64
	failAt.Store(450)
	failing := func(ctx context.Context, file string, rec ingest.RoutingRecord) error {
		if int64(rec.Index) == failAt.Load() {
			return errors.New("lake unreachable")
		}
		return handler(ctx, file, rec)
	}
	const n = 600 // more than MaxConcurrent
	var msgs []routed
	for i := range n {
		msgs = append(msgs, routed{device: "pi-1", body: encodeBatch(t, wire.Binary, "pi-1", 1, uint64(i+1), 40)})
	}
	if err := files.Put(ctx, "myhub/0/2026/11/24/12/00.avro", avroFile(t, ocf.Deflate, msgs)); err != nil {
		t.Fatal(err)
	}
	r, err := ingest.NewRouting(ctx, ingest.RoutingOptions{Files: files, Prefix: "myhub/", State: lk, Handler: failing, Quarantine: quarantine, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Poll(ctx); err == nil || got != 0 || !strings.Contains(err.Error(), "record 450") {
		t.Fatalf("Poll with a failing record = %d, %v; want 0 files and the record's error", got, err)
	}
	failAt.Store(-1)
	if got, err := r.Poll(ctx); err != nil || got != 1 {
		t.Fatalf("Poll = %d, %v; want the file processed", got, err)
	}
	st := ld.Stats()
	if landed, dup := st.Batches.Load(), st.Duplicates.Load(); landed != n || landed+dup < n {
		t.Fatalf("landed %d batches (%d duplicates), want %d", landed, dup, n)
	}
	if segs := st.Segments.Load(); segs >= n/2 { // one at a time: a segment each
		t.Fatalf("%d segments for %d records: records were landed one at a time", segs, n)
	}
}
