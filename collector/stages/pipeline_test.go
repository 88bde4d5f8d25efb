package stages_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
	"github.com/pilake/pilake/internal/clock"
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

// notLanded is the Name of batches tests submit without landing them first
// (the stages use a submitted batch's Name only in quarantine records).
const notLanded = "landing/x"

// instOne is the Lander instance of landOne's segments, and segCounter
// numbers them (unique in the test binary, in call order).
const instOne = "00000000000000c3"

var segCounter atomic.Uint64

// landOne writes b alone in a segment, received at recv over MQTT, as a
// Lander does with a batch that arrives while it is idle, and returns the
// segment's name.
func landOne(t testing.TB, l lake.Lake, recv time.Time, b *wire.Batch) string {
	t.Helper()
	return landSegment(t, l, instOne, segCounter.Add(1), recv, "mqtt", b)
}

func newLake(t testing.TB) *lake.Local {
	t.Helper()
	l, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// clockAt is a clock standing at us µs since the Unix epoch.
func clockAt(us int64) clock.Clock { return clock.NewFake(time.UnixMicro(us)) }

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
	r := start(t, l, stages.Options{Clock: clockAt(t0), MaxSkew: -1, Live: func(u schema.LiveUpdate) {
		mu.Lock()
		u.Silver = slices.Clone(u.Silver)
		u.Gold = slices.Clone(u.Gold)
		lives = append(lives, u)
		mu.Unlock()
	}})
	total := 0
	for d := range 3 {
		for _, b := range makeBatches(fmt.Sprintf("dev-%d", d), 0xdead0000+uint64(d), 30, 400, t0+int64(d)*777, rng) {
			name := landOne(t, l, time.UnixMicro(t0), b)
			total += len(b.Readings)
			if err := r.p.Submit(t.Context(), landing.Landed{Name: name, Batch: b, ReceivedAt: time.UnixMicro(t0), Source: "mqtt"}); err != nil {
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

// The statistics the bronze writer keeps itself match the rows in each file.
func TestBronzeStats(t *testing.T) {
	l := newLake(t)
	rng := rand.New(rand.NewPCG(21, 22))
	r := start(t, l, stages.Options{MaxSkew: -1, Clock: clockAt(t0), MaxEpochRows: 1000})
	for d, dev := range []string{"b-2", "a-1", "c-3"} {
		for _, b := range makeBatches(dev, uint64(d+5), 6, 300, t0+int64(d)*999, rng) {
			if err := r.p.Submit(t.Context(), landing.Landed{Name: notLanded, Batch: b, ReceivedAt: time.UnixMicro(t0 + int64(b.Seq)), Source: "mqtt"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.stop(t)
	snap, err := delta.Load(t.Context(), l, schema.Bronze)
	if err != nil {
		t.Fatal(err)
	}
	if snap.NumFiles() < 3 {
		t.Fatalf("%d bronze files at version %d, stats %+v", snap.NumFiles(), snap.Version, r.p.Stats())
	}
	for _, f := range snap.Files() {
		st, err := f.ParsedStats()
		if err != nil {
			t.Fatal(err)
		}
		rows, err := delta.ReadFiles[schema.BronzeRow](t.Context(), l, schema.Bronze, []delta.AddFile{f}, nil)
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := rows[0], rows[0]
		for _, r := range rows {
			lo.TS, hi.TS = min(lo.TS, r.TS), max(hi.TS, r.TS)
			lo.TempC, hi.TempC = min(lo.TempC, r.TempC), max(hi.TempC, r.TempC)
			lo.Device, hi.Device = min(lo.Device, r.Device), max(hi.Device, r.Device)
			lo.Seq, hi.Seq = min(lo.Seq, r.Seq), max(hi.Seq, r.Seq)
		}
		num := func(v any) float64 { f, _ := v.(json.Number).Float64(); return f }
		if st.NumRecords != int64(len(rows)) ||
			st.MinValues["ts"] != delta.FormatStatsTime(lo.TS) || st.MaxValues["ts"] != delta.FormatStatsTime(hi.TS) ||
			num(st.MinValues["temp_c"]) != lo.TempC || num(st.MaxValues["temp_c"]) != hi.TempC ||
			st.MinValues["device"] != lo.Device || st.MaxValues["device"] != hi.Device ||
			num(st.MinValues["seq"]) != float64(lo.Seq) || num(st.MaxValues["seq"]) != float64(hi.Seq) {
			t.Fatalf("stats %s for rows %d, ts %d..%d, temp %v..%v, device %s..%s, seq %d..%d", f.Stats, len(rows),
				lo.TS, hi.TS, lo.TempC, hi.TempC, lo.Device, hi.Device, lo.Seq, hi.Seq)
		}
	}
}
