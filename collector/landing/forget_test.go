package landing_test

import (
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/internal/clock"
)

// TestLanderForgetsIdleStreams: a stream nothing was landed in for
// ForgetAfter leaves the Lander's memory; its redelivered batch then lands
// again (the stages keep one copy), and a live stream is kept.
func TestLanderForgetsIdleStreams(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	ld, err := landing.New(landing.Options{Lake: lake.NewMemory(), Clock: clk, ForgetAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	land := func(dev string, seq uint64) landing.Outcome {
		t.Helper()
		b := batch(dev, seq, 3)
		for i := range b.Readings {
			b.Readings[i].TimeUS = clk.Now().UnixMicro() + int64(i)
		}
		out, err := ld.Land(t.Context(), landing.Message{Data: encode(t, wire.Binary, b), Source: "mqtt", Device: dev})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if land("gone", 1) != landing.OutcomeLanded || land("stays", 1) != landing.OutcomeLanded {
		t.Fatal("first landings")
	}
	if land("gone", 1) != landing.OutcomeDuplicate {
		t.Fatal("redelivery before ForgetAfter not a duplicate")
	}
	for i := range 8 { // "stays" keeps sending
		clk.Advance(10 * time.Minute)
		land("stays", uint64(i+2))
	}
	if n := ld.Streams(); n != 1 || ld.Stats().Forgotten.Load() != 1 {
		t.Fatalf("%d streams remembered, %d forgotten; want 1 and 1", n, ld.Stats().Forgotten.Load())
	}
	if land("stays", 2) != landing.OutcomeDuplicate {
		t.Fatal("a live stream was forgotten")
	}
	if land("gone", 1) != landing.OutcomeLanded {
		t.Fatal("a forgotten stream's redelivery did not land again")
	}
	if ld.Streams() != 2 {
		t.Fatalf("%d streams after it came back, want 2", ld.Streams())
	}
}
