package landing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/lake"
)

// gated is a lake whose segment writes each wait for the test: it reports
// the segment on entered and returns what the test sends on release.
type gated struct {
	*lake.Memory
	entered chan []byte
	release chan error
}

func newGated() *gated {
	return &gated{Memory: lake.NewMemory(), entered: make(chan []byte), release: make(chan error)}
}

func (g *gated) PutIfAbsent(ctx context.Context, name string, data []byte) error {
	if !strings.HasPrefix(name, SegmentDir) {
		return g.Memory.PutIfAbsent(ctx, name, data)
	}
	g.entered <- data
	if err := <-g.release; err != nil {
		return err
	}
	return g.Memory.PutIfAbsent(ctx, name, data)
}

func testBatch(t *testing.T, device string, seq uint64) []byte {
	t.Helper()
	b := &wire.Batch{DeviceID: device, BootID: 7, Seq: seq, IntervalUS: 2500}
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC).UnixMicro() + int64(seq)*25000
	for i := range 10 {
		b.Readings = append(b.Readings, wire.Reading{TimeUS: t0 + int64(i)*2500, Temp: 2150, Press: 101325 * 256, Hum: 45 * 1024})
	}
	data, err := wire.NewEncoder(wire.Binary).Append(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

type landResult struct {
	out Outcome
	err error
}

func landAsync(ld *Lander, ctx context.Context, data []byte) chan landResult {
	ch := make(chan landResult, 1)
	go func() {
		out, err := ld.Land(ctx, Message{Data: data, Source: "mqtt"})
		ch <- landResult{out, err}
	}()
	return ch
}

// waitQueued waits until the open segment holds n records.
func waitQueued(ld *Lander, n int) {
	for {
		ld.sw.mu.Lock()
		got := ld.sw.cur.n
		ld.sw.mu.Unlock()
		if got >= n {
			return
		}
		runtime.Gosched()
	}
}

func returned(ch chan landResult) bool {
	select {
	case r := <-ch:
		ch <- r
		return true
	default:
		return false
	}
}

var quietLog = slog.New(slog.DiscardHandler)

// A redelivery that arrives while the first copy is being landed waits for
// it: it is a duplicate once the first copy is durable, and lands itself if
// the first copy failed.
func TestLandRedeliveryWhileLanding(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail=%v", fail), func(t *testing.T) {
			g := newGated()
			var mu sync.Mutex
			var submitted int
			ld, err := New(Options{Lake: g, Logger: quietLog, MaxConcurrentWrites: 2, Submit: func(context.Context, Landed) error {
				mu.Lock()
				submitted++
				mu.Unlock()
				return nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			data := testBatch(t, "pi-1", 1)
			first := landAsync(ld, t.Context(), data)
			<-g.entered
			second := landAsync(ld, t.Context(), data)
			if returned(second) {
				t.Fatal("redelivery returned before the first copy was durable")
			}
			var injected error
			if fail {
				injected = errors.New("injected: lake unavailable")
			}
			g.release <- injected
			if r := <-first; !errors.Is(r.err, injected) || fail != (r.err != nil) {
				t.Fatalf("first copy: %v, %v", r.out, r.err)
			}
			want := OutcomeDuplicate
			if fail {
				<-g.entered // the redelivery lands itself
				g.release <- nil
				want = OutcomeLanded
			}
			if r := <-second; r.err != nil || r.out != want {
				t.Fatalf("redelivery: %v, %v; want %v", r.out, r.err, want)
			}
			if out, err := ld.Land(t.Context(), Message{Data: data, Source: "mqtt"}); err != nil || out != OutcomeDuplicate {
				t.Fatalf("redelivery after durable: %v, %v; want duplicate", out, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if submitted != 1 || ld.Stats().Segments.Load() != 1 {
				t.Fatalf("submitted %d, segments %d; want 1, 1", submitted, ld.Stats().Segments.Load())
			}
		})
	}
}

// Batches queued while the writer is busy go into one segment; if its write
// fails, every caller gets the error and nothing counts as landed.
func TestLandSegmentSharedFate(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail=%v", fail), func(t *testing.T) {
			g := newGated()
			var mu sync.Mutex
			var got []Landed
			ld, err := New(Options{Lake: g, Logger: quietLog, MaxConcurrentWrites: 1, Submit: func(_ context.Context, l Landed) error {
				mu.Lock()
				got = append(got, l)
				mu.Unlock()
				return nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			first := landAsync(ld, t.Context(), testBatch(t, "pi-1", 1))
			<-g.entered // the only writer is busy
			var rest []chan landResult
			for seq := range uint64(3) {
				rest = append(rest, landAsync(ld, t.Context(), testBatch(t, "pi-2", seq+1)))
			}
			waitQueued(ld, 3)
			g.release <- nil
			if r := <-first; r.err != nil {
				t.Fatal(r.err)
			}
			seg := <-g.entered
			recs, err := DecodeSegment(seg)
			if err != nil || len(recs) != 3 {
				t.Fatalf("second segment: %d records, %v; want 3", len(recs), err)
			}
			var injected error
			if fail {
				injected = errors.New("injected: lake unavailable")
			}
			g.release <- injected
			for _, ch := range rest {
				r := <-ch
				if fail != (r.err != nil) || fail && !errors.Is(r.err, injected) {
					t.Fatalf("Land = %v, %v; want error %v", r.out, r.err, injected)
				}
			}
			mu.Lock()
			got = append([]Landed(nil), got...)
			mu.Unlock()
			if fail {
				if len(got) != 1 || ld.Stats().LakeErrors.Load() != 3 || ld.Stats().Batches.Load() != 1 {
					t.Fatalf("submitted %d, lake errors %d, batches %d; want 1, 3, 1", len(got), ld.Stats().LakeErrors.Load(), ld.Stats().Batches.Load())
				}
				// Nothing of the failed segment counts as landed: a
				// redelivery lands.
				again := landAsync(ld, t.Context(), testBatch(t, "pi-2", 1))
				<-g.entered
				g.release <- nil
				if r := <-again; r.err != nil || r.out != OutcomeLanded {
					t.Fatalf("redelivery after a failed segment: %v, %v", r.out, r.err)
				}
				return
			}
			if len(got) != 4 || got[1].Name != got[3].Name || got[1].SegmentRecords != 3 || got[0].SegmentRecords != 1 {
				t.Fatalf("submitted %+v; want the last three in one segment of 3", got)
			}
		})
	}
}

// A writer lingers for more batches before cutting a segment, but not past
// the segment's limit: with an hour's linger, a full segment is written at
// once, and the batches that arrived together share it.
func TestLandSegmentLinger(t *testing.T) {
	mem := lake.NewMemory()
	ld, err := New(Options{Lake: mem, Logger: quietLog, MaxConcurrentWrites: 1, SegmentLinger: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var all []chan landResult
	for seq := range uint64(segmentMaxRecords) {
		all = append(all, landAsync(ld, ctx, testBatch(t, "pi-1", seq+1)))
	}
	for _, ch := range all {
		if r := <-ch; r.err != nil || r.out != OutcomeLanded {
			t.Fatalf("Land = %v, %v; want landed (a full segment must not wait out the linger)", r.out, r.err)
		}
	}
	objs, err := mem.List(ctx, SegmentDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 {
		t.Fatalf("%d segments for %d batches landed together, want 1", len(objs), segmentMaxRecords)
	}
	if got := ld.Stats().Segments.Load(); got != 1 {
		t.Fatalf("Segments = %d, want 1", got)
	}
}
