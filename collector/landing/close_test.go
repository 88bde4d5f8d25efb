package landing_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
)

// TestCloseWaitsForGoroutines: Close writes the open segment at once
// (rather than after its linger), lets a landing whose caller gave up hand
// its batch over, and returns only when every goroutine the Lander started
// (flushers, group writers, syncer, the detached landing) has ended.
func TestCloseWaitsForGoroutines(t *testing.T) {
	lk, err := lake.NewLocal(t.TempDir()) // a group-commit lake: writers and a syncer too
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	sub := &submitted{}
	ld, err := landing.New(landing.Options{Lake: lk, Submit: sub.submit, SegmentLinger: time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if runtime.NumGoroutine() <= before {
		t.Fatal("New started no goroutines")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // the caller gives up at once: the segment lingers for an hour
	if _, err := ld.Land(ctx, landing.Message{Data: encode(t, wire.Binary, batch("pi-1", 1, 10)), Source: "mqtt"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Land with its context ended = %v, want context.Canceled", err)
	}
	start := time.Now()
	if err := ld.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Minute {
		t.Fatalf("Close waited out the linger (%v)", d)
	}
	if n := len(segments(t, lk)); n != 1 {
		t.Fatalf("%d segments after Close, want 1", n)
	}
	sub.mu.Lock()
	got := len(sub.got)
	sub.mu.Unlock()
	if got != 1 {
		t.Fatalf("%d batches handed over by Close, want 1", got)
	}
	// A goroutine that has returned may be counted a moment longer.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, %d before New:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(time.Millisecond)
	}
	if err := ld.Close(); err != nil { // a second Close is harmless
		t.Fatal(err)
	}
}
