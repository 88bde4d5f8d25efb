package stages_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
	"github.com/pilake/pilake/internal/clock"
	"github.com/pilake/pilake/internal/testwait"
)

// listRecorder records the prefixes listed.
type listRecorder struct {
	lake.Lake
	mu       sync.Mutex
	prefixes []string
}

func (l *listRecorder) List(ctx context.Context, prefix string) ([]lake.Object, error) {
	l.mu.Lock()
	l.prefixes = append(l.prefixes, prefix)
	l.mu.Unlock()
	return l.Lake.List(ctx, prefix)
}

// TestLandingLifecycle: hours of landing segments whose batches are all in
// bronze are deleted once older than LandingRetention, newer ones are kept,
// and a restart lists only the hours from the state's position, never all
// of landing/.
func TestLandingLifecycle(t *testing.T) {
	mem := lake.NewMemory()
	clk := clock.NewFake(time.UnixMicro(t0).Add(30 * time.Minute))
	upkeep := &countingLock{}
	opts := stages.Options{MaxSkew: -1, Clock: clk, MaxEpochRows: 10, CompactEvery: 1, MaintenanceInterval: time.Hour,
		LandingRetention: 3 * time.Hour, ScanInterval: -1, LocalInstance: inst1, SkipShutdownScan: true, UpkeepLock: upkeep}
	r := start(t, mem, opts)
	<-r.p.Ready()
	rng := rand.New(rand.NewPCG(1, 2))
	const hours = 10
	for h := range hours {
		if h > 0 {
			clk.Advance(time.Hour) // h:30
		}
		b := makeBatches("d", 7, 1, 10, clk.Now().UnixMicro(), rng)[0]
		b.Seq = uint64(h + 1)
		name := landSegment(t, mem, inst1, uint64(h+1), clk.Now(), "mqtt", b)
		if err := r.p.Submit(t.Context(), landing.Landed{Name: name, SegmentRecords: 1, Batch: b, ReceivedAt: clk.Now(), Source: "mqtt"}); err != nil {
			t.Fatal(err)
		}
		testwait.Until(t, fmt.Sprintf("epoch %d committed", h+1), func() bool { return r.p.Stats().Epochs >= int64(h+1) })
	}
	r.stop(t)
	// The maintenance that deleted them ran under the upkeep lock.
	if n := upkeep.n.Load(); n < hours-1 {
		t.Fatalf("the upkeep lock was taken %d times in %d maintenance rounds", n, hours-1)
	}
	// It is 09:30: hours up to 07 are in bronze and behind the position;
	// those ending 3 h ago or more (00-05) are deleted.
	objs, err := mem.List(t.Context(), landing.SegmentDir)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, o := range objs {
		kept = append(kept, strings.Split(o.Name, "/")[3])
	}
	if strings.Join(kept, ",") != "06,07,08,09" {
		t.Fatalf("landing hours kept: %v, want 06-09", kept)
	}
	if got := len(bronzeKeys(t, mem)); got != hours {
		t.Fatalf("%d batches in bronze, want %d", got, hours)
	}
	// A restart lists hours from the position, not landing/.
	rec := &listRecorder{Lake: mem}
	r = start(t, rec, opts)
	<-r.p.Ready()
	r.stop(t)
	for _, p := range rec.prefixes {
		if p == schema.Landing || p == landing.SegmentDir {
			t.Fatalf("restart listed %q", p)
		}
	}
	if len(rec.prefixes) == 0 || len(rec.prefixes) > 6 {
		t.Fatalf("restart listed %v: want the few hours from the position", rec.prefixes)
	}
	if got := len(bronzeKeys(t, mem)); got != hours {
		t.Fatalf("%d batches in bronze after the restart, want %d", got, hours)
	}
}

// TestForgetDevices: a device unseen for ForgetAfter has its open windows
// finalised, then leaves the state and the watermarks; when it comes back
// it starts afresh, and a device that keeps sending is kept.
func TestForgetDevices(t *testing.T) {
	l := newLake(t)
	clk := clock.NewFake(time.UnixMicro(t0))
	opts := stages.Options{MaxSkew: time.Hour, AllowedLateness: time.Second, ForgetAfter: 3 * time.Hour, Clock: clk,
		MaxEpochRows: 10, ScanInterval: -1, SkipShutdownScan: true}
	r := start(t, l, opts)
	<-r.p.Ready()
	rng := rand.New(rand.NewPCG(3, 4))
	epochs := int64(0)
	send := func(dev string, boot, seq uint64) {
		t.Helper()
		b := makeBatches(dev, boot, 1, 10, clk.Now().UnixMicro(), rng)[0]
		b.Seq = seq
		if err := r.p.Submit(t.Context(), landing.Landed{Name: notLanded, Batch: b, ReceivedAt: clk.Now(), Source: "mqtt"}); err != nil {
			t.Fatal(err)
		}
		epochs++
		testwait.Until(t, fmt.Sprintf("epoch %d committed", epochs), func() bool { return r.p.Stats().Epochs >= epochs })
	}
	send("gone", 1, 1)
	send("stays", 1, 1)
	for i := range 8 { // 4 hours of "stays" only
		clk.Advance(30 * time.Minute)
		send("stays", 1, uint64(i+2))
	}
	wm := r.p.Watermarks()
	if _, ok := wm["gone"]; ok || len(wm) != 1 {
		t.Fatalf("watermarks %v: want only stays", wm)
	}
	if s := r.p.Stats(); s.DevicesForgotten != 1 || s.StreamsForgotten != 1 {
		t.Fatalf("forgot %d devices, %d streams; want 1 and 1", s.DevicesForgotten, s.StreamsForgotten)
	}
	// "gone" comes back after a reboot: a fresh start.
	send("gone", 2, 1)
	if _, ok := r.p.Watermarks()["gone"]; !ok {
		t.Fatal("a device that came back has no watermark")
	}
	r.stop(t)
	// Its first life's readings (10 at 400 Hz: one 1 s window) were
	// finalised into silver when it was forgotten, once; its gold averages
	// restarted with the second life.
	var windows int
	for _, row := range readAll[schema.SilverRow](t, l, schema.Silver) {
		if row.Device == "gone" {
			windows++
			if row.Count != 10 {
				t.Fatalf("window %+v: want the 10 readings of one batch", row)
			}
		}
	}
	if windows != 2 {
		t.Fatalf("%d silver windows of the forgotten device, want 2 (one per life)", windows)
	}
	for _, g := range readAll[schema.GoldRow](t, l, schema.Gold) {
		if g.Device == "gone" && g.Windows != 1 {
			t.Fatalf("gold %+v: a device that came back must average its new windows only", g)
		}
	}
}

// countingLock is a sync.Locker that counts how often it was taken.
type countingLock struct {
	mu sync.Mutex
	n  atomic.Int64
}

func (l *countingLock) Lock()   { l.mu.Lock(); l.n.Add(1) }
func (l *countingLock) Unlock() { l.mu.Unlock() }
