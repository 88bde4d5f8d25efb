package sample

import (
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/hw"
)

// TestWallClockSteps steps the wall clock forward and back by hours and a
// day while sampling at 400 Hz in virtual time (as NTP setting a Pi that
// booted without a real-time clock would, or an operator). Every tick's
// reading is kept, once; each batch is cut at a step, carries the new offset
// and FlagClockStepped; within a batch timestamps follow the schedule; and
// every reading's time minus its batch's offset is its monotonic tick time,
// so a collector can re-base it.
func TestWallClockSteps(t *testing.T) {
	const day = 24 * time.Hour
	clk := newVirtClock(10 * time.Second)
	fake := hw.NewFake(hw.FakeConfig{Seed: hw.SeedFor("pi-step"), Now: clk.Now})
	t.Cleanup(func() { _ = fake.Close() })
	sens, err := hw.NewSensor(fake, fake.Addr(), &normalOpts, false)
	if err != nil {
		t.Fatal(err)
	}
	var offset atomic.Int64                               // wall − monotonic, µs
	offset.Store(-48 * int64(time.Hour/time.Microsecond)) // booted 48 h behind
	steps := []struct {
		at time.Duration
		to time.Duration // new offset
	}{
		{2 * time.Second, 0},                  // NTP sets it: +48 h
		{4 * time.Second, -3 * time.Hour},     // back 3 h
		{6 * time.Second, day},                // forward a day and 3 h
		{8*time.Second + 1, -day + time.Hour}, // back almost two days
	}
	for _, st := range steps {
		clk.at(st.at, func() { offset.Store(int64(st.to / time.Microsecond)) })
	}
	s, err := New(Options{
		Sensor: sens, DeviceID: "pi-step", BootID: 0x57e9, Clock: clk, ReadTimeout: 20 * time.Millisecond, QueueLen: 64,
		ClockSynced: func() bool { return offset.Load() == 0 }, WallMinusMono: offset.Load,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{clk: clk, fake: fake, sens: sens, s: s}
	batches := r.run(t)
	st := s.Stats()
	if st.ClockSteps != int64(len(steps)) {
		t.Errorf("%d clock steps counted, want %d", st.ClockSteps, len(steps))
	}
	if st.DroppedRdg != 0 || st.MissedTicks != 0 {
		t.Fatalf("dropped %d readings, missed %d ticks", st.DroppedRdg, st.MissedTicks)
	}
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC).UnixMicro() + 48*int64(time.Hour/time.Microsecond) // monotonic µs at start
	var n int64
	stepped := 0
	prevMono := int64(-1)
	seen := map[int64]bool{}
	for i, b := range batches {
		if err := b.Validate(); err != nil {
			t.Fatalf("batch %d: %v", b.Seq, err)
		}
		for _, enc := range []wire.Encoding{wire.Binary, wire.JSON} {
			data, err := wire.NewEncoder(enc).Append(nil, &b)
			var back wire.Batch
			if err == nil {
				err = wire.Decode(data, &back)
			}
			if err != nil || back.Flags != b.Flags || back.MonoOffsetUS != b.MonoOffsetUS || back.Readings[0].TimeUS != b.Readings[0].TimeUS {
				t.Fatalf("batch %d through %v: %v, flags %b offset %d", b.Seq, enc, err, back.Flags, back.MonoOffsetUS)
			}
		}
		if b.Flags&wire.FlagClockStepped != 0 {
			stepped++
			if i == 0 {
				t.Errorf("the first batch is marked stepped")
			}
		}
		if want := b.MonoOffsetUS == 0; (b.Flags&wire.FlagClockSynced != 0) != want {
			t.Errorf("batch %d: offset %d, flags %b", b.Seq, b.MonoOffsetUS, b.Flags)
		}
		for j, rd := range b.Readings {
			mono := rd.TimeUS - b.MonoOffsetUS
			if (mono-t0)%2500 != 0 {
				t.Fatalf("batch %d reading %d: monotonic time %d is off the 2.5 ms schedule", b.Seq, j, mono-t0)
			}
			if mono <= prevMono {
				t.Fatalf("batch %d reading %d: monotonic time %d not after %d", b.Seq, j, mono, prevMono)
			}
			if seen[rd.TimeUS] {
				t.Fatalf("batch %d reading %d: timestamp %d given twice", b.Seq, j, rd.TimeUS)
			}
			seen[rd.TimeUS] = true
			prevMono = mono
			n++
		}
	}
	if stepped != len(steps) {
		t.Errorf("%d batches marked stepped, want %d", stepped, len(steps))
	}
	if n != st.Readings || n < 3900 {
		t.Fatalf("%d readings in batches, sampler counted %d (want ~4000 in 10 s at 400 Hz)", n, st.Readings)
	}
	// The batch after the "+48 h" step is synced and carries the true time.
	for _, b := range batches {
		if b.Flags&wire.FlagClockStepped != 0 && b.MonoOffsetUS == 0 {
			if got := time.UnixMicro(b.Readings[0].TimeUS).UTC(); got.Sub(time.Date(2026, 11, 26, 12, 0, 2, 0, time.UTC)).Abs() > 10*time.Millisecond {
				t.Errorf("first reading after NTP set the clock at %v, want 2026-11-26 12:00:02", got)
			}
		}
	}
}
