package stages_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
)

// t0 is a fixed capture time base (2026-01-01T00:00:00Z).
const t0 = int64(1767225600) * 1_000_000

// makeBatches builds nb batches of per readings for device dev at 400 Hz from start.
func makeBatches(dev string, boot uint64, nb, per int, start int64, rng *rand.Rand) []*wire.Batch {
	var out []*wire.Batch
	ts := start
	for s := 1; s <= nb; s++ {
		b := &wire.Batch{DeviceID: dev, BootID: boot, Seq: uint64(s), IntervalUS: 2500, Flags: wire.FlagClockSynced}
		for range per {
			b.Readings = append(b.Readings, wire.Reading{TimeUS: ts, Temp: 2000 + rng.Int32N(500), Press: 101325*256 + rng.Uint32N(5000),
				Hum: 40*1024 + rng.Uint32N(2048), Fresh: rng.IntN(4) == 0})
			ts += 2500
		}
		out = append(out, b)
	}
	return out
}

func landName(b *wire.Batch) string { return schema.Landing + b.Key() + ".bin" }

// land writes b to landing/ as the ingest side does.
func land(t testing.TB, l lake.Lake, b *wire.Batch) string {
	t.Helper()
	data, err := wire.NewEncoder(wire.Binary).Append(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	name := landName(b)
	if err := l.PutIfAbsent(context.Background(), name, data); err != nil {
		t.Fatal(err)
	}
	return name
}

func newLake(t testing.TB) *lake.Local {
	t.Helper()
	l, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func clockAt(us int64) func() time.Time { return func() time.Time { return time.UnixMicro(us) } }

type run struct {
	p       *stages.Pipeline
	cancel  context.CancelFunc
	errc    chan error
	stopped bool
}

func start(t testing.TB, l lake.Lake, opts stages.Options) *run {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := stages.New(l, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{p: p, cancel: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if !r.stopped {
			<-r.errc // the lake directory is removed next: let Run finish first
		}
	})
	return r
}

func (r *run) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	r.stopped = true
	if err := <-r.errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func readAll[T any](t testing.TB, l lake.Lake, table string) []T {
	t.Helper()
	rows, err := delta.ReadTable[T](context.Background(), l, table, nil)
	if err != nil {
		t.Fatalf("reading %s: %v", table, err)
	}
	return rows
}

func sortSilver(r []schema.SilverRow) []schema.SilverRow {
	slices.SortFunc(r, func(a, b schema.SilverRow) int {
		if c := strings.Compare(a.Device, b.Device); c != 0 {
			return c
		}
		return int(a.WindowStart - b.WindowStart)
	})
	return r
}

func TestSubmitBronzeSilverGold(t *testing.T) {
	l := newLake(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var mu sync.Mutex
	var lives []schema.LiveUpdate
	r := start(t, l, stages.Options{Now: clockAt(t0), MaxSkew: -1, Live: func(u schema.LiveUpdate) {
		mu.Lock()
		u.Silver = slices.Clone(u.Silver)
		u.Gold = slices.Clone(u.Gold)
		lives = append(lives, u)
		mu.Unlock()
	}})
	total := 0
	for d := range 3 {
		for _, b := range makeBatches(fmt.Sprintf("dev-%d", d), 0xdead0000+uint64(d), 30, 400, t0+int64(d)*777, rng) {
			name := land(t, l, b)
			total += len(b.Readings)
			if err := r.p.Submit(t.Context(), stages.Landed{Name: name, Batch: b, ReceivedAt: time.UnixMicro(t0), Source: "mqtt"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.stop(t)
	bronze := readAll[schema.BronzeRow](t, l, schema.Bronze)
	if len(bronze) != total {
		t.Fatalf("bronze has %d rows, want %d", len(bronze), total)
	}
	silver := readAll[schema.SilverRow](t, l, schema.Silver)
	var sum int64
	for _, s := range silver {
		sum += s.Count
		if s.WindowEnd-s.WindowStart != 1e6 || s.WindowStart%1e6 != 0 {
			t.Fatalf("window %+v", s)
		}
	}
	if sum != int64(total) {
		t.Fatalf("sum(silver.count) = %d, want %d", sum, total)
	}
	gold := readAll[schema.GoldRow](t, l, schema.Gold)
	if len(gold) != 3*len(silver) {
		t.Fatalf("%d gold rows for %d silver rows", len(gold), len(silver))
	}
	if len(lives) == 0 {
		t.Fatal("no live updates")
	}
	st := r.p.Stats()
	if st.Readings != int64(total) || st.Late != 0 || st.Batches != 90 {
		t.Fatalf("stats %+v", st)
	}
}
