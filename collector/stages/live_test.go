package stages_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
)

// gateLake holds every Delta commit (a put under a _delta_log/) while hold
// is set, until release is closed: a commit that takes as long as the test
// wants.
type gateLake struct {
	lake.Lake
	hold    atomic.Bool
	held    chan struct{} // closed when the first commit is held
	once    sync.Once
	release chan struct{}
}

func (g *gateLake) PutIfAbsent(ctx context.Context, name string, data []byte) error {
	if g.hold.Load() && strings.Contains(name, "/_delta_log/") {
		g.once.Do(func() { close(g.held) })
		select {
		case <-g.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Lake.PutIfAbsent(ctx, name, data)
}

// waitFor waits for a signal a test expects to come (a liveness check, not
// a speed one: the deadline only keeps a broken build from hanging).
func waitFor[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s", what)
	case <-t.Context().Done():
		t.Fatalf("no %s", what)
	}
	var zero T
	return zero
}

// Live updates never wait for lake commits: while one epoch's commit is held,
// later epochs queue (up to MaxPendingEpochs) and every batch submitted
// meanwhile is folded and published at once.
func TestLiveWhileCommitIsSlow(t *testing.T) {
	base := newLake(t)
	g := &gateLake{Lake: base, held: make(chan struct{}), release: make(chan struct{})}
	lives := make(chan schema.LiveUpdate, 64)
	opts := stages.Options{MaxSkew: -1, Clock: clockAt(t0), MaxEpochRows: 100, QueueLen: 1, MaxPendingEpochs: 4,
		Live: func(u schema.LiveUpdate) { lives <- u }}
	r := start(t, g, opts)
	waitFor(t, r.p.Ready(), "ready signal")
	g.hold.Store(true)
	rng := rand.New(rand.NewPCG(71, 72))
	bs := makeBatches("slow-1", 7, 6, 100, t0, rng) // each batch fills an epoch (MaxEpochRows 100)
	submit := func(i int) {
		b := bs[i]
		if err := r.p.Submit(t.Context(), landing.Landed{Name: landOne(t, base, time.UnixMicro(t0), b), Batch: b, ReceivedAt: time.UnixMicro(t0), Source: "mqtt"}); err != nil {
			t.Fatal(err)
		}
	}
	submit(0)
	waitFor(t, lives, "live update for batch 1")
	waitFor(t, g.held, "held commit") // epoch 1's bronze commit is in progress and held
	// Epochs 2-5 queue behind it (with a queue of one epoch, folding stopped
	// at epoch 3's cut and batch 4 was never published).
	for i := 1; i < 5; i++ {
		submit(i)
		u := waitFor(t, lives, "live update while a commit is held")
		if u.NewestCaptureUS != bs[i].Readings[len(bs[i].Readings)-1].TimeUS {
			t.Fatalf("live update %d: newest capture %d, want batch %d's", i+1, u.NewestCaptureUS, i+1)
		}
	}
	if st := r.p.Stats(); st.Epochs != 0 || st.Readings != 500 {
		t.Fatalf("stats %+v with the first commit held: want 0 epochs, 500 readings folded", st)
	}
	close(g.release)
	submit(5)
	r.stop(t)
	if n := len(readAll[schema.BronzeRow](t, base, schema.Bronze)); n != 600 {
		t.Fatalf("bronze %d rows, want 600", n)
	}
}

// Ready is closed after what was in landing/ at start is in bronze's epoch
// state, before Run takes submitted batches.
func TestReadyAfterStartupScan(t *testing.T) {
	l := newLake(t)
	rng := rand.New(rand.NewPCG(81, 82))
	for _, b := range makeBatches("pre-1", 3, 5, 200, t0, rng) {
		landOne(t, l, time.UnixMicro(t0), b)
	}
	r := start(t, l, stages.Options{MaxSkew: -1, Clock: clockAt(t0)})
	waitFor(t, r.p.Ready(), "ready signal")
	if st := r.p.Stats(); st.Readings != 1000 || st.Batches != 5 {
		t.Fatalf("stats at Ready %+v: want the 5 landed batches (1000 readings) folded", st)
	}
	r.stop(t)
	select {
	case <-r.p.Done():
	default:
		t.Fatal("Done not closed after Run returned")
	}
}

// Release comes after the pipeline's last read of a batch: poisoning every
// released batch changes nothing in bronze or silver (and -race sees no
// conflicting access). Duplicates are released; batches with quarantined
// readings are not.
func TestReleaseAfterLastUse(t *testing.T) {
	l := newLake(t)
	rng := rand.New(rand.NewPCG(91, 92))
	var released atomic.Int64
	poison := func(b *wire.Batch) {
		for i := range b.Readings {
			b.Readings[i] = wire.Reading{TimeUS: -1, Temp: -27300}
		}
		b.DeviceID = "poisoned"
		released.Add(1)
	}
	r := start(t, l, stages.Options{Clock: clockAt(t0), MaxEpochRows: 1000, Release: poison})
	bs := makeBatches("rel-1", 5, 20, 100, t0, rng)
	want := map[int64]wire.Reading{}
	for _, b := range bs {
		for _, rd := range b.Readings {
			want[rd.TimeUS] = rd
		}
	}
	// Batch 20 has one reading far in the future: quarantined, not released.
	delete(want, bs[19].Readings[99].TimeUS)
	bs[19].Readings[99].TimeUS = t0 + int64(48*time.Hour/time.Microsecond)
	for _, b := range bs {
		cp := *b
		cp.Readings = slices.Clone(b.Readings) // the pipeline owns (and here poisons) what it gets
		if err := r.p.Submit(t.Context(), landing.Landed{Name: notLanded, Batch: &cp, ReceivedAt: time.UnixMicro(t0), Source: "mqtt"}); err != nil {
			t.Fatal(err)
		}
	}
	dup := *bs[0]
	dup.Readings = slices.Clone(bs[0].Readings)
	if err := r.p.Submit(t.Context(), landing.Landed{Name: notLanded, Batch: &dup, ReceivedAt: time.UnixMicro(t0), Source: "mqtt"}); err != nil {
		t.Fatal(err)
	}
	r.stop(t)
	if n := released.Load(); n != 20 { // 19 folded + 1 duplicate
		t.Fatalf("released %d batches, want 20", n)
	}
	bronze := readAll[schema.BronzeRow](t, l, schema.Bronze)
	if len(bronze) != len(want) {
		t.Fatalf("bronze %d rows, want %d", len(bronze), len(want))
	}
	for _, row := range bronze {
		rd, ok := want[row.TS]
		if !ok || row.Device != "rel-1" || row.TempC != rd.TempC() || row.PressurePa == nil || *row.PressurePa != rd.PressurePa() {
			t.Fatalf("bronze row %+v does not match its reading %+v", row, rd)
		}
	}
	var sum int64
	for _, s := range readAll[schema.SilverRow](t, l, schema.Silver) {
		if s.Device != "rel-1" {
			t.Fatalf("silver row %+v", s)
		}
		sum += s.Count
	}
	if sum != int64(len(want)) {
		t.Fatalf("sum(silver.count) = %d, want %d", sum, len(want))
	}
}
