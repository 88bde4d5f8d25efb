package sample

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/hw"
	"github.com/pilake/pilake/internal/clock"
)

// virtClock is virtual time: SleepUntil jumps to the due time at once, so a
// 10 s run at 400 Hz takes milliseconds and never sleeps. Hooks run (on the
// sampler's goroutine) when time first reaches their instant; the run ends at end.
type virtClock struct {
	mu    sync.Mutex
	t     time.Time
	end   time.Time
	hooks []hook
}

type hook struct {
	at time.Time
	fn func()
}

var errEnd = errors.New("virtual run over")

func newVirtClock(d time.Duration) *virtClock {
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	return &virtClock{t: t0, end: t0.Add(d)}
}

func (c *virtClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *virtClock) at(d time.Duration, fn func()) {
	c.hooks = append(c.hooks, hook{at: c.t.Add(d), fn: fn})
}

func (c *virtClock) SleepUntil(ctx context.Context, t time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !t.Before(c.end) {
		return errEnd
	}
	c.mu.Lock()
	if t.After(c.t) {
		c.t = t
	}
	var due []func()
	c.hooks = slices.DeleteFunc(c.hooks, func(h hook) bool {
		if !h.at.After(c.t) {
			due = append(due, h.fn)
			return true
		}
		return false
	})
	c.mu.Unlock()
	for _, fn := range due {
		fn()
	}
	return nil
}

// After jumps virtual time d ahead, as SleepUntil does (the sampler sleeps
// with clock.SleepUntil, which calls SleepUntil); past the end it never
// fires.
func (c *virtClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	if c.SleepUntil(context.Background(), c.Now().Add(d)) == nil {
		ch <- c.Now()
	}
	return ch
}

var _ clock.Clock = (*virtClock)(nil)

// advance moves virtual time by d (a slow read).
func (c *virtClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var normalOpts = bmxx80.Opts{Temperature: bmxx80.O1x, Pressure: bmxx80.O1x, Humidity: bmxx80.O1x, Filter: bmxx80.F2, Standby: time.Millisecond}

type rig struct {
	clk  *virtClock
	fake *hw.Fake
	sens *hw.Sensor
	s    *Sampler
}

func newRig(t *testing.T, d time.Duration, chip byte) *rig {
	return newRigPath(t, d, chip, false)
}

func newRigPath(t *testing.T, d time.Duration, chip byte, driver bool) *rig {
	t.Helper()
	return newRigTimeout(t, d, chip, driver, 20*time.Millisecond)
}

// newRigTimeout is newRigPath with the sampler's ReadTimeout (real time).
func newRigTimeout(t *testing.T, d time.Duration, chip byte, driver bool, readTimeout time.Duration) *rig {
	t.Helper()
	clk := newVirtClock(d)
	fake := hw.NewFake(hw.FakeConfig{Seed: hw.SeedFor("pi-test"), Now: clk.Now, ChipID: chip})
	t.Cleanup(func() { _ = fake.Close() })
	sens, err := hw.NewSensor(fake, fake.Addr(), &normalOpts, false)
	if err != nil {
		t.Fatalf("hw.NewSensor: %v", err)
	}
	s, err := New(Options{
		Sensor: sens, DeviceID: "pi-test", BootID: 0xb007, Clock: clk, DriverSense: driver,
		ReadTimeout: readTimeout, QueueLen: 64, // virtual time outruns the consumer
		ClockSynced: func() bool { return true }, WallMinusMono: func() int64 { return 42 },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{clk: clk, fake: fake, sens: sens, s: s}
}

// run samples until the virtual end and returns deep copies of the batches.
func (r *rig) run(t *testing.T) []wire.Batch {
	t.Helper()
	var out []wire.Batch
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range r.s.Batches() {
			c := *b
			c.Readings = slices.Clone(b.Readings)
			out = append(out, c)
			r.s.Release(b)
		}
	}()
	if err := r.s.Run(t.Context()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	<-done
	return out
}

func TestSamplingSchedule(t *testing.T) {
	for _, driver := range []bool{false, true} {
		name := "ReadFixed"
		if driver {
			name = "bmxx80 Sense"
		}
		t.Run(name, func(t *testing.T) { testSamplingSchedule(t, driver) })
	}
}

func testSamplingSchedule(t *testing.T, driver bool) {
	// Every reading is counted: a read that a loaded machine (-race, CI)
	// delays past 20 ms of real time would be discarded as stuck (1 run in
	// 30 found 399 readings in a batch).
	r := newRigTimeout(t, 10*time.Second, 0, driver, 2*time.Second)
	batches := r.run(t)
	if len(batches) != 10 {
		t.Fatalf("%d batches in 10 s, want 10; stats %+v", len(batches), r.s.Stats())
	}
	enc := wire.NewEncoder(wire.Binary)
	var fresh, total int
	for i, b := range batches {
		if b.Seq != uint64(i+1) || b.BootID != 0xb007 || b.DeviceID != "pi-test" {
			t.Fatalf("batch %d: seq %d boot %x device %q", i, b.Seq, b.BootID, b.DeviceID)
		}
		wantFlags := wire.FlagClockSynced
		if i == len(batches)-1 {
			wantFlags |= wire.FlagLast // the stop ends the boot's stream
		}
		if b.Flags != wantFlags || b.MonoOffsetUS != 42 || b.IntervalUS != 2500 {
			t.Fatalf("batch %d: flags %b mono offset %d interval %d", i, b.Flags, b.MonoOffsetUS, b.IntervalUS)
		}
		if len(b.Readings) != 400 && !(i == 0 && len(b.Readings) >= 395) {
			t.Fatalf("batch %d has %d readings, want 400", i, len(b.Readings))
		}
		for j := 1; j < len(b.Readings); j++ {
			if d := b.Readings[j].TimeUS - b.Readings[j-1].TimeUS; d != 2500 {
				t.Fatalf("batch %d reading %d: timestamp step %d µs, want 2500", i, j, d)
			}
		}
		if err := b.Validate(); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		data, err := enc.Append(nil, &b)
		if err != nil {
			t.Fatalf("encoding batch %d: %v", i, err)
		}
		var got wire.Batch
		if err := wire.Decode(data, &got); err != nil {
			t.Fatalf("decoding batch %d: %v", i, err)
		}
		if !slices.Equal(got.Readings, b.Readings) {
			t.Fatalf("batch %d does not round-trip through the wire format", i)
		}
		for _, rd := range b.Readings {
			total++
			if rd.Fresh {
				fresh++
			}
		}
	}
	// The fake converts every t_measure+t_standby ≈ 8.5 ms: ~117 fresh/s of 400 polls.
	rate := hw.ConversionRate(&normalOpts, true)
	wantFresh := rate.Typical * 10
	if float64(fresh) < 0.9*wantFresh || float64(fresh) > 1.1*wantFresh {
		t.Fatalf("%d fresh readings of %d in 10 s, want ≈ %.0f (the sensor's conversion rate)", fresh, total, wantFresh)
	}
	st := r.s.Stats()
	if st.MissedTicks != 0 || st.ReadErrors != 0 || st.Fresh != int64(fresh) {
		t.Fatalf("stats %+v", st)
	}
	if q := r.s.Lateness().Quantile(0.99); q != 0 {
		t.Fatalf("virtual clock lateness p99 %v µs, want 0", q)
	}
}

func TestMissedTicksAreSkippedNotBurst(t *testing.T) {
	r := newRig(t, 3*time.Second, 0)
	r.clk.at(time.Second, func() { r.clk.advance(100 * time.Millisecond) }) // a 100 ms hiccup
	batches := r.run(t)
	st := r.s.Stats()
	if st.MissedTicks != 40 {
		t.Fatalf("missed %d ticks over a 100 ms hiccup at 400 Hz, want 40", st.MissedTicks)
	}
	var n int
	for _, b := range batches {
		n += len(b.Readings)
		for j := 1; j < len(b.Readings); j++ {
			if d := b.Readings[j].TimeUS - b.Readings[j-1].TimeUS; d%2500 != 0 || d <= 0 {
				t.Fatalf("timestamp step %d µs is off the schedule", d)
			}
		}
	}
	if st.Ticks+st.MissedTicks != 1200 || int64(n) != st.Ticks-st.NotReady || st.NotReady > 4 {
		t.Fatalf("%d readings, stats %+v: want ticks+missed = 1200 and a reading on every tick after the first conversion", n, st)
	}
}

// TestFaults injects each of hw's faults two seconds into a six-second run
// and checks that the sampler survives, reports it, and recovers.
func TestFaults(t *testing.T) {
	tests := []struct {
		name   string
		chip   byte
		inject func(t *testing.T, r *rig)
		check  func(t *testing.T, r *rig, st Stats, h Health, batches []wire.Batch)
	}{
		{
			name: "I/O errors",
			inject: func(t *testing.T, r *rig) {
				r.clk.at(2*time.Second, func() { r.fake.FailNext(8, nil) })
			},
			check: func(t *testing.T, r *rig, st Stats, h Health, _ []wire.Batch) {
				if st.ReadErrors == 0 || st.Reinits == 0 {
					t.Errorf("read errors %d, reinits %d: want both > 0 after 8 NACKs", st.ReadErrors, st.Reinits)
				}
				if !h.OK || !strings.Contains(h.LastError, "acknowledge") {
					t.Errorf("health %+v: want ok with the NACK as last error", h)
				}
			},
		},
		{
			name: "sensor reset",
			inject: func(t *testing.T, r *rig) {
				r.clk.at(2*time.Second, func() { r.fake.Reset() })
			},
			check: func(t *testing.T, r *rig, st Stats, h Health, _ []wire.Batch) {
				if st.Reinits != 1 || !h.OK || !strings.Contains(h.LastError, "reset") {
					t.Errorf("reinits %d, health %+v: want one re-init and ok", st.Reinits, h)
				}
			},
		},
		{
			name: "frozen values",
			inject: func(t *testing.T, r *rig) {
				r.clk.at(2*time.Second, func() { r.fake.Freeze(true) })
			},
			check: func(t *testing.T, r *rig, st Stats, h Health, _ []wire.Batch) {
				if h.State != "frozen" || h.OK {
					t.Errorf("health %+v: want frozen", h)
				}
				if st.Reinits == 0 {
					t.Errorf("no re-initialisation attempted on a frozen sensor")
				}
			},
		},
		{
			name: "BMP280 after a reset",
			inject: func(t *testing.T, r *rig) {
				r.clk.at(2*time.Second, func() { r.fake.SetChipID(hw.ChipIDBMP280); r.fake.Reset() })
			},
			check: func(t *testing.T, r *rig, st Stats, h Health, batches []wire.Batch) {
				if h.State != "reinit-failed" || !strings.Contains(h.LastError, "BMP280") {
					t.Errorf("health %+v: want reinit-failed naming the BMP280", h)
				}
				if st.ReinitErrors == 0 {
					t.Errorf("no failed re-initialisation counted")
				}
			},
		},
		{
			name: "stuck bus",
			inject: func(t *testing.T, r *rig) {
				r.clk.at(2*time.Second, func() {
					blocked := r.fake.Stall()
					go func() {
						<-blocked
						// Release once the watchdog has reported the stuck read.
						deadline := time.After(10 * time.Second)
						for r.s.Health().State != "stuck" {
							select {
							case <-r.s.HealthChanged():
							case <-deadline:
								r.fake.Release()
								return
							}
						}
						r.fake.Release()
					}()
				})
			},
			check: func(t *testing.T, r *rig, st Stats, h Health, _ []wire.Batch) {
				if st.Timeouts == 0 || !h.OK || !strings.Contains(h.LastError, "stuck") {
					t.Errorf("timeouts %d, health %+v: want a timeout, then ok", st.Timeouts, h)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 6*time.Second, tc.chip)
			tc.inject(t, r)
			batches := r.run(t)
			st, h := r.s.Stats(), r.s.Health()
			t.Logf("stats %+v health %+v", st, h)
			for _, b := range batches {
				if err := b.Validate(); err != nil {
					t.Fatalf("batch %d invalid: %v", b.Seq, err)
				}
			}
			for i := 1; i < len(batches); i++ {
				if batches[i].Seq != batches[i-1].Seq+1 {
					t.Fatalf("batch seqs not consecutive: %d then %d", batches[i-1].Seq, batches[i].Seq)
				}
			}
			if h.State == "stopped" {
				t.Fatal("health not kept after Run")
			}
			tc.check(t, r, st, h, batches)
		})
	}
}

// neverReady is a sensor that is configured but never completes a
// conversion (hw.ErrNotReady forever): no fake-bus fault produces that, so
// this small Sensor stands in.
type neverReady struct{ reinits int }

func (n *neverReady) Sense(*physic.Env) error {
	return fmt.Errorf("test sensor: %w", hw.ErrNotReady)
}
func (n *neverReady) Reinit() error { n.reinits++; return nil }

func TestSensorThatNeverConverts(t *testing.T) {
	clk := newVirtClock(6 * time.Second)
	sens := &neverReady{}
	s, err := New(Options{Sensor: sens, DeviceID: "pi-test", BootID: 1, Clock: clk, QueueLen: 64,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{clk: clk, s: s}
	if batches := r.run(t); len(batches) != 0 {
		t.Fatalf("%d batches from a sensor that never converts", len(batches))
	}
	h := s.Health()
	if h.State != "frozen" || !strings.Contains(h.LastError, "no conversion") || sens.reinits == 0 {
		t.Fatalf("health %+v after %d re-inits: want frozen with re-initialisations", h, sens.reinits)
	}
}

// With AlignBatches, batches are cut on whole seconds of the wall clock
// whatever the moment the sampler starts: the first batch is shorter, every
// later one starts on a whole second; readings stay on one 2.5 ms grid.
func TestAlignedBatches(t *testing.T) {
	for _, offset := range []time.Duration{0, 300*time.Millisecond + 1234*time.Microsecond, 999 * time.Millisecond} {
		t.Run(offset.String(), func(t *testing.T) {
			clk := newVirtClock(5 * time.Second)
			clk.t = clk.t.Add(offset)
			fake := hw.NewFake(hw.FakeConfig{Seed: hw.SeedFor("pi-test"), Now: clk.Now})
			t.Cleanup(func() { _ = fake.Close() })
			sens, err := hw.NewSensor(fake, fake.Addr(), &normalOpts, false)
			if err != nil {
				t.Fatal(err)
			}
			s, err := New(Options{Sensor: sens, DeviceID: "pi-test", BootID: 1, Clock: clk, AlignBatches: true,
				ReadTimeout: 20 * time.Millisecond, QueueLen: 64, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			batches := (&rig{clk: clk, fake: fake, sens: sens, s: s}).run(t)
			if len(batches) < 4 {
				t.Fatalf("%d batches", len(batches))
			}
			// The first batch ends with its second (readings begin after
			// the sensor settles); every reading is on the second's grid.
			b0 := batches[0].Readings
			if sec := b0[0].TimeUS / 1_000_000; b0[len(b0)-1].TimeUS != sec*1_000_000+997_500 {
				t.Fatalf("first batch %d..%d µs, want it to end at the last tick of its second", b0[0].TimeUS, b0[len(b0)-1].TimeUS)
			}
			for _, b := range batches {
				for _, rd := range b.Readings {
					if rd.TimeUS%2500 != 0 {
						t.Fatalf("reading at %d µs, off the second's 2.5 ms grid", rd.TimeUS)
					}
				}
			}
			for i, b := range batches[1 : len(batches)-1] {
				if ts := b.Readings[0].TimeUS; ts%1_000_000 != 0 || len(b.Readings) != 400 {
					t.Fatalf("batch %d starts at %d µs with %d readings, want a whole second and 400", i+1, ts, len(b.Readings))
				}
			}
		})
	}
}
