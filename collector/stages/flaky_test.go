package stages_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
)

// flakyLake fails a share of writes, as a lake with outages does: some
// before writing, and some commits after writing (a timeout whose write
// landed), which the pipeline must recognise as its own.
type flakyLake struct {
	lake.Lake
	mu        sync.Mutex
	rng       *rand.Rand
	failures  int
	ambiguous int
}

var _ lake.Lake = (*flakyLake)(nil)

var errOutage = errors.New("injected lake outage")

func (f *flakyLake) roll(p float64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rng.Float64() < p
}

func (f *flakyLake) fail() error {
	f.mu.Lock()
	f.failures++
	f.mu.Unlock()
	return errOutage
}

func (f *flakyLake) Put(ctx context.Context, name string, data []byte) error {
	if f.roll(0.1) {
		return f.fail()
	}
	return f.Lake.Put(ctx, name, data)
}

func (f *flakyLake) PutIfAbsent(ctx context.Context, name string, data []byte) error {
	if strings.HasPrefix(name, schema.Landing) {
		return f.Lake.PutIfAbsent(ctx, name, data)
	}
	if f.roll(0.1) {
		return f.fail()
	}
	err := f.Lake.PutIfAbsent(ctx, name, data)
	if err == nil && strings.Contains(name, "_delta_log/") && f.roll(0.2) {
		f.mu.Lock()
		f.ambiguous++
		f.mu.Unlock()
		return errOutage // written, but the caller is told otherwise
	}
	return err
}

func (f *flakyLake) Get(ctx context.Context, name string) ([]byte, error) {
	if f.roll(0.02) {
		return nil, f.fail()
	}
	return f.Lake.Get(ctx, name)
}

// A lake that fails writes (and reports some successful commits as failed)
// delays commits but loses and duplicates nothing.
func TestLakeOutagesLoseNothing(t *testing.T) {
	for seed := range uint64(3) {
		t.Run("", func(t *testing.T) { testLakeOutages(t, seed) })
	}
}

func testLakeOutages(t *testing.T, seed uint64) {
	base := newLake(t)
	fl := &flakyLake{Lake: base, rng: rand.New(rand.NewPCG(31, seed))}
	rng := rand.New(rand.NewPCG(33, seed))
	r := start(t, fl, stages.Options{MaxSkew: -1, Clock: clockAt(t0), MaxEpochRows: 500, CommitInterval: 10 * time.Millisecond,
		GoldMaxRows: 50, CompactEvery: 3, RetryBackoff: time.Millisecond})
	total := 0
	for d, dev := range []string{"f-1", "f-2"} {
		for _, b := range makeBatches(dev, uint64(d+1), 40, 100, t0+int64(d)*100, rng) {
			name := landOne(t, base, time.UnixMicro(t0), b)
			total += len(b.Readings)
			if err := r.p.Submit(t.Context(), landing.Landed{Name: name, Batch: b, ReceivedAt: time.UnixMicro(t0), Source: "mqtt"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.stop(t)
	if fl.failures == 0 || fl.ambiguous == 0 {
		t.Fatalf("no outage injected (%d failures, %d ambiguous)", fl.failures, fl.ambiguous)
	}
	st := r.p.Stats()
	t.Logf("%d injected failures, %d ambiguous commits, %d commit retries, %d epochs", fl.failures, fl.ambiguous, st.CommitRetries, st.Epochs)
	bronze := readAll[schema.BronzeRow](t, base, schema.Bronze)
	if len(bronze) != total {
		t.Fatalf("bronze %d rows, want %d", len(bronze), total)
	}
	var sum int64
	silver := readAll[schema.SilverRow](t, base, schema.Silver)
	for _, s := range silver {
		sum += s.Count
	}
	if sum != int64(total) {
		t.Fatalf("sum(silver.count) %d, want %d", sum, total)
	}
	if g := len(readAll[schema.GoldRow](t, base, schema.Gold)); g != 3*len(silver) {
		t.Fatalf("%d gold rows for %d silver rows", g, len(silver))
	}
}

// Two pipelines on one lake: the second fails with a conflict instead of
// duplicating or dropping rows.
func TestSecondWriterConflicts(t *testing.T) {
	l := newLake(t)
	rng := rand.New(rand.NewPCG(51, 52))
	bs := makeBatches("w-1", 1, 4, 100, t0, rng)
	a := start(t, l, stages.Options{MaxSkew: -1, Clock: clockAt(t0)})
	b := start(t, l, stages.Options{MaxSkew: -1, Clock: clockAt(t0)})
	// Segments of another collector (the only kind a running Lander
	// writes), in the clock's hour: their shutdown scans find them.
	for i, bt := range bs {
		landSegment(t, l, inst2, uint64(i+1), time.UnixMicro(t0), "mqtt", bt)
	}
	// Both land everything at shutdown (their scans); only one may commit epoch 1.
	a.cancel()
	b.cancel()
	a.stopped, b.stopped = true, true
	errA, errB := <-a.errc, <-b.errc
	if (errA == nil) == (errB == nil) {
		t.Fatalf("errors %v and %v: want exactly one conflict", errA, errB)
	}
	if err := errors.Join(errA, errB); !errors.Is(err, delta.ErrConflict) {
		t.Fatalf("%v: want delta.ErrConflict", err)
	}
	if n := len(readAll[schema.BronzeRow](t, l, schema.Bronze)); n != 400 {
		t.Fatalf("bronze %d rows, want 400", n)
	}
}

// downLake fails every write once down is set.
type downLake struct {
	lake.Lake
	down atomic.Bool
}

func (d *downLake) Put(ctx context.Context, name string, data []byte) error {
	if d.down.Load() {
		return errOutage
	}
	return d.Lake.Put(ctx, name, data)
}

func (d *downLake) PutIfAbsent(ctx context.Context, name string, data []byte) error {
	if d.down.Load() && !strings.HasPrefix(name, schema.Landing) {
		return errOutage
	}
	return d.Lake.PutIfAbsent(ctx, name, data)
}

// With the lake down at shutdown, Run gives up after ShutdownTimeout with
// an error instead of hanging; the landed batches are recovered next time.
func TestShutdownWithLakeDown(t *testing.T) {
	base := newLake(t)
	dl := &downLake{Lake: base}
	rng := rand.New(rand.NewPCG(61, 62))
	opts := stages.Options{MaxSkew: -1, Clock: clockAt(t0), ShutdownTimeout: 300 * time.Millisecond, RetryBackoff: time.Millisecond,
		MaxEpochRows: 100, QueueLen: 1}
	r := start(t, dl, opts)
	bs := makeBatches("d-1", 1, 10, 100, t0, rng)
	for _, b := range bs[:2] {
		if err := r.p.Submit(t.Context(), landing.Landed{Name: landOne(t, base, time.UnixMicro(t0), b), Batch: b, ReceivedAt: time.UnixMicro(t0), Source: "mqtt"}); err != nil {
			t.Fatal(err)
		}
	}
	dl.down.Store(true)
	blocked := 0
	for _, b := range bs[2:] {
		// The commits fail, the epoch queue fills, Submit blocks: back-pressure.
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		err := r.p.Submit(ctx, landing.Landed{Name: landOne(t, base, time.UnixMicro(t0), b), Batch: b, ReceivedAt: time.UnixMicro(t0), Source: "mqtt"})
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			blocked++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if blocked == 0 {
		t.Fatal("Submit never blocked while the lake was down")
	}
	r.cancel()
	r.stopped = true
	if err := <-r.errc; err == nil {
		t.Fatal("Run returned nil with the lake down")
	}
	// The lake is back: a restart lands everything exactly once.
	r = start(t, base, stages.Options{MaxSkew: -1, Clock: clockAt(t0)})
	r.stop(t)
	if n := len(readAll[schema.BronzeRow](t, base, schema.Bronze)); n != 1000 {
		t.Fatalf("bronze %d rows, want 1000", n)
	}
}
