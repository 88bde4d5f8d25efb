package landing_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/internal/clock"
	"github.com/pilake/pilake/scripts/testenv"
)

// batch returns a valid batch of n readings at 400 Hz.
func batch(device string, seq uint64, n int) *wire.Batch {
	b := &wire.Batch{DeviceID: device, BootID: 0xdeadbeef, Seq: seq, IntervalUS: 2500}
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC).UnixMicro() + int64(seq)*int64(n)*2500
	for i := range n {
		b.Readings = append(b.Readings, wire.Reading{TimeUS: t0 + int64(i)*2500, Temp: 2150, Press: 101325 * 256, Hum: 45 * 1024, Fresh: i%4 == 0})
	}
	return b
}

func encode(t testing.TB, enc wire.Encoding, b *wire.Batch) []byte {
	t.Helper()
	data, err := wire.NewEncoder(enc).Append(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

type submitted struct {
	mu  sync.Mutex
	got []landing.Landed
}

func (s *submitted) submit(ctx context.Context, l landing.Landed) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, l)
	return nil
}

func testLander(t *testing.T, lk lake.Lake) {
	ctx := t.Context()
	sub := &submitted{}
	now := time.Date(2026, 11, 24, 12, 0, 5, 0, time.UTC)
	clk := clock.NewFake(now)
	ld, err := landing.New(landing.Options{Lake: lk, Submit: sub.submit, Clock: clk, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	good := batch("pi-1", 1, 400)
	bin := encode(t, wire.Binary, good)
	js := encode(t, wire.JSON, batch("pi-2", 7, 3))
	badDevice := []byte(strings.Replace(string(encode(t, wire.JSON, batch("pi-3", 1, 2))), `"pi-3"`, `"../x"`, -1))
	hot := strings.Replace(string(encode(t, wire.JSON, batch("pi-4", 1, 2))), `"temperature":21.50`, `"temperature":99.00`, 1)
	newVersion := append([]byte{0x7f}, bin[1:]...)
	truncated := bin[:len(bin)/2]

	cases := []struct {
		desc     string
		msg      landing.Message
		want     landing.Outcome
		wantKind string // quarantine kind
	}{
		{desc: "binary lands", msg: landing.Message{Data: bin, Source: "mqtt", Device: "pi-1"}, want: landing.OutcomeLanded},
		{desc: "redelivery is a duplicate", msg: landing.Message{Data: bin, Source: "mqtt", Device: "pi-1"}, want: landing.OutcomeDuplicate},
		{desc: "json lands", msg: landing.Message{Data: js, Source: "iothub"}, want: landing.OutcomeLanded},
		{desc: "truncated", msg: landing.Message{Data: truncated, Source: "mqtt", Topic: "pilake/v1/telemetry/pi-1"}, want: landing.OutcomeQuarantined, wantKind: landing.KindCorrupt},
		{desc: "garbage json", msg: landing.Message{Data: []byte(`[{"deviceId":`), Source: "mqtt"}, want: landing.OutcomeQuarantined, wantKind: landing.KindCorrupt},
		{desc: "empty", msg: landing.Message{Data: nil, Source: "mqtt"}, want: landing.OutcomeQuarantined, wantKind: landing.KindCorrupt},
		{desc: "unknown version", msg: landing.Message{Data: newVersion, Source: "mqtt"}, want: landing.OutcomeQuarantined, wantKind: landing.KindVersion},
		{desc: "bad device id", msg: landing.Message{Data: badDevice, Source: "mqtt"}, want: landing.OutcomeQuarantined, wantKind: landing.KindBadDevice},
		{desc: "temperature out of range", msg: landing.Message{Data: []byte(hot), Source: "mqtt"}, want: landing.OutcomeQuarantined, wantKind: landing.KindOutOfRange},
		{desc: "device differs from topic", msg: landing.Message{Data: bin, Source: "mqtt", Device: "pi-9"}, want: landing.OutcomeQuarantined, wantKind: landing.KindDeviceMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			sub.mu.Lock()
			before := len(sub.got)
			sub.mu.Unlock()
			q0 := quarantined(t, lk)
			got, err := ld.Land(ctx, tc.msg)
			if err != nil {
				t.Fatalf("Land: %v", err)
			}
			if got != tc.want {
				t.Fatalf("outcome %v, want %v", got, tc.want)
			}
			sub.mu.Lock()
			nsub := len(sub.got) - before
			var last landing.Landed
			if nsub > 0 {
				last = sub.got[len(sub.got)-1]
			}
			sub.mu.Unlock()
			switch tc.want {
			case landing.OutcomeLanded:
				if nsub != 1 || last.Source != tc.msg.Source || !last.ReceivedAt.Equal(now) || last.SegmentRecords != 1 {
					t.Fatalf("submitted %d, last %+v; want one, alone in its segment", nsub, last)
				}
				if inst, _, ok := landing.ParseSegmentName(last.Name); !ok || inst != ld.Instance() {
					t.Fatalf("landed in %q, not a segment of instance %s", last.Name, ld.Instance())
				}
				recs := segmentRecords(t, lk, last.Name)
				if len(recs) != 1 || string(recs[0].Payload) != string(tc.msg.Data) || recs[0].Source != tc.msg.Source || !recs[0].ReceivedAt.Equal(now) {
					t.Fatalf("segment %s holds %+v", last.Name, recs)
				}
			case landing.OutcomeDuplicate:
				if nsub != 0 {
					t.Fatalf("duplicate submitted again")
				}
			case landing.OutcomeQuarantined:
				if nsub != 0 {
					t.Fatalf("quarantined input submitted")
				}
				q := quarantined(t, lk)
				if len(q) != len(q0)+2 {
					t.Fatalf("quarantine holds %d objects, want %d", len(q), len(q0)+2)
				}
				rec := newestRecord(t, lk, q0, q)
				if rec.Kind != tc.wantKind || rec.Reason == "" || rec.Source != tc.msg.Source || rec.Size != len(tc.msg.Data) {
					t.Fatalf("record %+v, want kind %s", rec, tc.wantKind)
				}
				if ld.Stats().Quarantined(tc.wantKind) == 0 {
					t.Fatalf("counter for %s not incremented", tc.wantKind)
				}
			}
		})
	}
	if s := ld.Stats(); s.Batches.Load() != 2 || s.Readings.Load() != 403 || s.Duplicates.Load() != 1 || s.Segments.Load() != 2 {
		t.Fatalf("stats batches=%d readings=%d duplicates=%d segments=%d, want 2, 403, 1, 2",
			s.Batches.Load(), s.Readings.Load(), s.Duplicates.Load(), s.Segments.Load())
	}
	if objs := segments(t, lk); len(objs) != 2 {
		t.Fatalf("landing/ holds %d segments, want 2", len(objs))
	}
}

// segments lists the segments in landing/.
func segments(t *testing.T, lk lake.Lake) []lake.Object {
	t.Helper()
	objs, err := lk.List(t.Context(), landing.SegmentDir)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// segmentRecords reads and decodes a segment.
func segmentRecords(t *testing.T, lk lake.Lake, name string) []landing.SegmentRecord {
	t.Helper()
	data, err := lk.Get(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := landing.DecodeSegment(data)
	if err != nil {
		t.Fatalf("segment %s: %v", name, err)
	}
	return recs
}

func quarantined(t *testing.T, lk lake.Lake) []lake.Object {
	t.Helper()
	objs, err := lk.List(t.Context(), "_quarantine/")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func newestRecord(t *testing.T, lk lake.Lake, before, after []lake.Object) landing.Record {
	t.Helper()
	seen := map[string]bool{}
	for _, o := range before {
		seen[o.Name] = true
	}
	for _, o := range after {
		if !seen[o.Name] && strings.HasSuffix(o.Name, ".reason.json") {
			data, err := lk.Get(t.Context(), o.Name)
			if err != nil {
				t.Fatal(err)
			}
			var rec landing.Record
			if err := json.Unmarshal(data, &rec); err != nil {
				t.Fatal(err)
			}
			return rec
		}
	}
	t.Fatal("no new .reason.json in _quarantine/")
	return landing.Record{}
}

func TestLandLocal(t *testing.T) {
	lk, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	testLander(t, lk)
}

func TestLandAzurite(t *testing.T) {
	az := testenv.AzuriteBlob(t)
	lk, err := lake.NewAzure(t.Context(), lake.AzureOptions{ConnectionString: az.ConnectionString(),
		Container: fmt.Sprintf("landing-%d", rand.Uint32())})
	if err != nil {
		t.Fatal(err)
	}
	testLander(t, lk)
}

// failing is a lake whose writes fail until healed: a disk or Azure outage.
type failing struct {
	lake.Lake
	mu   sync.Mutex
	down bool
}

func (f *failing) PutIfAbsent(ctx context.Context, name string, data []byte) error {
	f.mu.Lock()
	down := f.down
	f.mu.Unlock()
	if down {
		return errors.New("injected: lake unavailable")
	}
	return f.Lake.PutIfAbsent(ctx, name, data)
}

func TestLandLakeDownIsNotAcknowledged(t *testing.T) {
	local, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	lk := &failing{Lake: local, down: true}
	sub := &submitted{}
	ld, err := landing.New(landing.Options{Lake: lk, Submit: sub.submit})
	if err != nil {
		t.Fatal(err)
	}
	msg := landing.Message{Data: encode(t, wire.Binary, batch("pi-1", 1, 10)), Source: "mqtt"}
	if _, err := ld.Land(t.Context(), msg); err == nil {
		t.Fatal("Land succeeded with the lake down")
	}
	if ld.Stats().LakeErrors.Load() != 1 || len(sub.got) != 0 {
		t.Fatalf("lake errors %d, submitted %d; want 1, 0", ld.Stats().LakeErrors.Load(), len(sub.got))
	}
	lk.mu.Lock()
	lk.down = false
	lk.mu.Unlock()
	if out, err := ld.Land(t.Context(), msg); err != nil || out != landing.OutcomeLanded {
		t.Fatalf("redelivery after the outage: %v, %v", out, err)
	}
}

// While the stages are behind, Land waits in Submit until its context ends;
// the batch is durable by then (a redelivery would be a duplicate), so the
// Lander hands it to the stages in the background.
func TestLandSubmitBlocksUntilContextEnds(t *testing.T) {
	lk, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	handedOver := make(chan landing.Landed, 1)
	var calls atomic.Int32
	ld, err := landing.New(landing.Options{Lake: lk, Submit: func(ctx context.Context, l landing.Landed) error {
		if calls.Add(1) == 1 {
			close(entered)
			<-ctx.Done()
			return ctx.Err()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		handedOver <- l
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-entered; cancel() }()
	msg := landing.Message{Data: encode(t, wire.Binary, batch("pi-1", 1, 10)), Source: "mqtt"}
	_, err = ld.Land(ctx, msg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Land with stages behind and ctx cancelled = %v, want context.Canceled", err)
	}
	if l := <-handedOver; l.Batch.DeviceID != "pi-1" || l.Batch.Seq != 1 {
		t.Fatalf("handed over in the background: %s", l.Batch.Key())
	}
	// The redelivery is a duplicate and is not submitted again.
	if out, err := ld.Land(t.Context(), msg); err != nil || out != landing.OutcomeDuplicate || calls.Load() != 2 {
		t.Fatalf("redelivery = %v, %v after %d submits; want a duplicate, 2 submits", out, err, calls.Load())
	}
}

// A caller that gives up while its segment is being written does not take
// the batch from the stages: once durable, it is handed over anyway.
func TestLandCallerGivesUpBeforeDurable(t *testing.T) {
	g := &slowLake{Memory: lake.NewMemory(), release: make(chan struct{})}
	sub := make(chan landing.Landed, 1)
	ld, err := landing.New(landing.Options{Lake: g, Submit: func(ctx context.Context, l landing.Landed) error {
		sub <- l
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	msg := landing.Message{Data: encode(t, wire.Binary, batch("pi-1", 1, 10)), Source: "mqtt"}
	done := make(chan error, 1)
	go func() { _, err := ld.Land(ctx, msg); done <- err }()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Land with its context ended = %v, want context.Canceled", err)
	}
	close(g.release) // the segment becomes durable now
	if l := <-sub; l.Batch.DeviceID != "pi-1" || l.Batch.Seq != 1 {
		t.Fatalf("handed over: %s", l.Batch.Key())
	}
	if out, err := ld.Land(t.Context(), msg); err != nil || out != landing.OutcomeDuplicate {
		t.Fatalf("redelivery = %v, %v; want a duplicate", out, err)
	}
}

// slowLake holds every write until release is closed.
type slowLake struct {
	*lake.Memory
	release chan struct{}
}

func (s *slowLake) PutIfAbsent(ctx context.Context, name string, data []byte) error {
	<-s.release
	return s.Memory.PutIfAbsent(ctx, name, data)
}

func TestGroupCommitConcurrent(t *testing.T) {
	dir := t.TempDir()
	lk, err := lake.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	sub := &submitted{}
	ld, err := landing.New(landing.Options{Lake: lk, Submit: sub.submit})
	if err != nil {
		t.Fatal(err)
	}
	const devices, per = 20, 10
	var wg sync.WaitGroup
	for d := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := 1; s <= per; s++ {
				data := encode(t, wire.Binary, batch(fmt.Sprintf("pi-%d", d), uint64(s), 50))
				for range 2 { // every batch delivered twice
					if _, err := ld.Land(t.Context(), landing.Message{Data: data, Source: "mqtt"}); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(sub.got) != devices*per || ld.Stats().Duplicates.Load() != devices*per {
		t.Fatalf("submitted %d, duplicates %d; want %d each", len(sub.got), ld.Stats().Duplicates.Load(), devices*per)
	}
	// Every batch is in landing/ once, in a segment of the size its
	// submissions were told.
	var files int
	filepath.WalkDir(filepath.Join(dir, "landing"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files++
		}
		return nil
	})
	objs := segments(t, lk)
	if files != len(objs) || uint64(len(objs)) != ld.Stats().Segments.Load() {
		t.Fatalf("%d files in landing/, %d segments listed, %d counted", files, len(objs), ld.Stats().Segments.Load())
	}
	sizes := map[string]int{}
	for _, l := range sub.got {
		sizes[l.Name] = l.SegmentRecords
	}
	seen := map[string]bool{}
	for _, o := range objs {
		recs := segmentRecords(t, lk, o.Name)
		if sizes[o.Name] != len(recs) {
			t.Errorf("segment %s holds %d records, submissions say %d", o.Name, len(recs), sizes[o.Name])
		}
		for _, r := range recs {
			var b wire.Batch
			if err := wire.Decode(r.Payload, &b); err != nil {
				t.Fatal(err)
			}
			if seen[b.Key()] {
				t.Errorf("batch %s landed twice", b.Key())
			}
			seen[b.Key()] = true
		}
	}
	if len(seen) != devices*per {
		t.Fatalf("%d batches in landing/, want %d", len(seen), devices*per)
	}
}

var quiet = slog.New(slog.DiscardHandler)
