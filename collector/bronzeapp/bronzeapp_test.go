package bronzeapp_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/bronzeapp"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/landing/landingtest"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/internal/clock"
)

var quiet = slog.New(slog.DiscardHandler)

func batch(t *testing.T, dev string, seq uint64) []byte {
	t.Helper()
	b := &wire.Batch{DeviceID: dev, BootID: 0x9e3779b97f4a7c15, Seq: seq, IntervalUS: 2500}
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC).UnixMicro() + int64(seq)*1e6
	for i := range 10 {
		b.Readings = append(b.Readings, wire.Reading{TimeUS: t0 + int64(i)*2500, Temp: 2100, Press: 101325 * 256, Hum: 40 * 1024, Fresh: true})
	}
	data, err := wire.NewEncoder(wire.Binary).Append(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// process is one collector process: an appender and its Lander.
type process struct {
	a  *bronzeapp.Appender
	ld *landing.Lander
}

func start(t *testing.T, lk lake.Lake, name string) process {
	t.Helper()
	inst := landing.NewInstance()
	a, err := bronzeapp.New(lk, bronzeapp.Options{Name: name, Instance: inst, CommitInterval: time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	ld, err := landing.New(landing.Options{Lake: lk, Logger: quiet, Instance: inst, SegmentLinger: -1,
		Submit: func(ctx context.Context, l landing.Landed) error {
			return a.Submit(ctx, l)
		}})
	if err != nil {
		t.Fatal(err)
	}
	return process{a: a, ld: ld}
}

func land(t *testing.T, p process, dev string, seqs ...uint64) {
	t.Helper()
	for _, s := range seqs {
		if _, err := p.ld.Land(t.Context(), landing.Message{Data: batch(t, dev, s), Source: "mqtt", Device: dev}); err != nil {
			t.Fatal(err)
		}
	}
}

// run runs the appender until what was landed is committed.
func run(t *testing.T, p process) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.a.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func bronzeBatches(t *testing.T, lk lake.Lake) map[int64]int {
	t.Helper()
	rows, err := delta.ReadTable[schema.BronzeRow](t.Context(), lk, schema.Bronze, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]int{}
	for _, r := range rows {
		out[r.Seq]++
	}
	return out
}

// A collector that dies after landing (and acknowledging) batches but before
// its bronze commit gets them into bronze at its next start, once; a later
// redelivery of one of them is not appended again.
func TestRecoveryAppendsWhatACrashLeft(t *testing.T) {
	lk, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p1 := start(t, lk, "c1")
	land(t, p1, "pi-1", 1, 2)
	run(t, p1) // epoch 1: seqs 1, 2
	p1 = start(t, lk, "c1")
	land(t, p1, "pi-1", 3, 4, 5)
	// crash: p1's appender never commits 3, 4, 5
	p2 := start(t, lk, "c1")
	land(t, p2, "pi-1", 4, 6) // 4 redelivered after the crash
	run(t, p2)
	got := bronzeBatches(t, lk)
	for s := int64(1); s <= 6; s++ {
		if got[s] != 10 {
			t.Errorf("seq %d: %d readings in bronze, want 10 (once)", s, got[s])
		}
	}
	// p2 read the segments of the crashed instance (the first one was marked
	// done by the second's start): 3, 4, 5; then 4 came again.
	if st := p2.a.Stats(); st.Recovered != 3 || st.Duplicates != 1 {
		t.Errorf("stats %+v: want 3 recovered (3, 4, 5) and 1 duplicate (4 again)", st)
	}
	// and a clean restart appends nothing
	p3 := start(t, lk, "c1")
	run(t, p3)
	if st := p3.a.Stats(); st.Recovered != 0 || st.Epochs != 0 {
		t.Errorf("restart after a clean stop: %+v", st)
	}
	// and the next start does not even read p2's segments again
	if st := start(t, lk, "c1").a.Stats(); st.Duplicates != 0 || st.Recovered != 0 {
		t.Errorf("start after p2's segments were recovered once: %+v", st)
	}
	if got := bronzeBatches(t, lk); len(got) != 6 {
		t.Errorf("bronze batches %v", got)
	}
}

// Two collectors appending under one name would each think the other's
// epochs are theirs: the second commit of an epoch fails with ErrNameTaken.
func TestNameTaken(t *testing.T) {
	lk := lake.NewMemory()
	a := start(t, lk, "same")
	b := start(t, lk, "same")
	land(t, a, "pi-1", 1)
	land(t, b, "pi-2", 1)
	run(t, a)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.a.Run(ctx); !errors.Is(err, bronzeapp.ErrNameTaken) {
		t.Fatalf("second collector named the same: %v, want ErrNameTaken", err)
	}
}

// Collectors with different names append concurrently (blind appends that
// race for versions) and each batch is in bronze once.
func TestConcurrentCollectors(t *testing.T) {
	lk := lake.NewMemory()
	var ps []process
	for _, n := range []string{"c1", "c2", "c3"} {
		ps = append(ps, start(t, lk, n))
	}
	done := make(chan error, len(ps))
	for i, p := range ps {
		go func() {
			for s := uint64(1); s <= 20; s++ {
				if _, err := p.ld.Land(context.Background(), landing.Message{Data: batch(t, "pi-"+string(rune('a'+i)), s), Source: "mqtt"}); err != nil {
					done <- err
					return
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			done <- p.a.Run(ctx)
		}()
	}
	for range ps {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	rows, err := delta.ReadTable[schema.BronzeRow](t.Context(), lk, schema.Bronze, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3*20*10 {
		t.Fatalf("%d rows in bronze, want %d", len(rows), 3*20*10)
	}
	for _, p := range ps {
		if p.a.Stats().Epochs == 0 {
			t.Errorf("%s committed nothing", p.a.AppID())
		}
	}
	if _, err := bronzeapp.New(lk, bronzeapp.Options{Name: "Bad_Name", Instance: landing.NewInstance()}); err == nil {
		t.Error("bad name accepted")
	}
}

// The stage collector's skew checks apply in this mode too: readings
// captured further than MaxSkew from their receive time, or more than
// MaxAhead after it, are quarantined (kind skew) with the reason, the
// others go to bronze; the counters say so.
func TestSkewQuarantine(t *testing.T) {
	lk := lake.NewMemory()
	recv := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	a, err := bronzeapp.New(lk, bronzeapp.Options{Name: "skew", Instance: landing.NewInstance(), CommitInterval: time.Hour,
		MaxSkew: time.Hour, MaxAhead: 2 * time.Minute, Logger: quiet, Clock: clock.NewFake(recv)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	mk := func(seq uint64, offsets ...time.Duration) *wire.Batch {
		b := &wire.Batch{DeviceID: "pi-1", BootID: 7, Seq: seq, IntervalUS: 2500}
		for _, o := range offsets {
			b.Readings = append(b.Readings, wire.Reading{TimeUS: recv.Add(o).UnixMicro(), Temp: 2100, Press: 101325 * 256, Hum: 40 * 1024})
		}
		return b
	}
	for _, b := range []*wire.Batch{
		mk(1, -time.Second, 0),                                                 // fine
		mk(2, time.Minute, 3*time.Minute, 4*time.Minute),                       // 2 ahead of the receive time by more than MaxAhead
		mk(3, -2*time.Hour, -2*time.Hour+time.Second),                          // both more than MaxSkew behind
		mk(4, -61*time.Minute, -40*time.Minute, -20*time.Minute, -time.Second), // one more than MaxSkew behind
	} {
		if err := a.Submit(t.Context(), landing.Landed{Batch: b, ReceivedAt: recv, Source: "mqtt"}); err != nil {
			t.Fatal(err)
		}
	}
	run(t, process{a: a})
	got := bronzeBatches(t, lk)
	if want := map[int64]int{1: 2, 2: 1, 4: 3}; len(got) != len(want) || got[1] != 2 || got[2] != 1 || got[4] != 3 {
		t.Errorf("bronze readings per seq %v, want %v", got, want)
	}
	st := a.Stats()
	if st.Quarantined != 5 || st.Ahead != 2 || st.Readings != 6 || st.Batches != 4 || st.Epochs != 1 || st.LastCommit != recv || st.CommitSeconds.Count != 1 {
		t.Errorf("stats %+v: want 5 quarantined (2 ahead), 6 readings of 4 batches in 1 epoch", st)
	}
	var reasons []string
	for _, rec := range landingtest.Quarantined(t, lk) {
		if rec.Kind != landing.KindSkew {
			t.Errorf("quarantine kind %q", rec.Kind)
		}
		reasons = append(reasons, rec.Reason)
	}
	want := []string{
		"batch pi-1/0000000000000007/00000000000000000002: 2 readings captured more than 2m0s ahead of the receive time",
		"batch pi-1/0000000000000007/00000000000000000003: 2 readings captured more than 1h0m0s from the receive time",
		"batch pi-1/0000000000000007/00000000000000000004: 1 readings captured more than 1h0m0s from the receive time",
	}
	if len(reasons) != len(want) {
		t.Fatalf("quarantine reasons %q", reasons)
	}
	for i := range want {
		if !strings.HasPrefix(reasons[i], want[i]) {
			t.Errorf("reason %q, want it to start with %q", reasons[i], want[i])
		}
	}
}

// A collector whose bronze snapshot is behind (another collector committed
// the next version) loses the race, retries at the next version and counts
// the conflict.
func TestConflictCounted(t *testing.T) {
	lk := lake.NewMemory()
	a := start(t, lk, "c1")
	b := start(t, lk, "c2")
	land(t, a, "pi-1", 1)
	land(t, b, "pi-2", 1)
	run(t, b) // takes the version a's snapshot expects to write
	run(t, a)
	if st := a.a.Stats(); st.Conflicts < 1 || st.Epochs != 1 || st.Readings != 10 || st.CommitRetries != 0 {
		t.Errorf("stats %+v: want a conflict retried and the epoch committed", st)
	}
	if got := bronzeBatches(t, lk); got[1] != 20 {
		t.Errorf("bronze %v", got)
	}
}
