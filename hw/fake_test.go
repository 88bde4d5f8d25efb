package hw

import (
	"errors"
	"math"
	"testing"
	"time"

	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"
)

// envValues converts a driver reading to physical units.
func envValues(e *physic.Env) Values {
	return Values{
		TempC:   float64(e.Temperature-physic.ZeroCelsius) / float64(physic.Celsius),
		PressPa: float64(e.Pressure) / float64(physic.Pascal),
		HumRH:   float64(e.Humidity) / float64(physic.PercentRH),
	}
}

// fixedEnv converts ReadFixed's integers the way bmxx80 converts its own.
func fixedEnv(fx *Fixed, hum bool) physic.Env {
	e := physic.Env{
		Temperature: physic.Temperature(fx.Temp)*10*physic.MilliCelsius + physic.ZeroCelsius,
		Pressure:    physic.Pressure(fx.Press) * 15625 * physic.MicroPascal / 4,
	}
	if hum {
		e.Humidity = physic.RelativeHumidity(fx.Hum) * 10000 / 1024 * physic.MicroRH
	}
	return e
}

// TestNormalModeMatchesTruth reads the fake through periph's bmxx80 driver in
// normal mode at 400 Hz and checks every reading against the model's value
// within the sensor's resolution.
func TestNormalModeMatchesTruth(t *testing.T) {
	// Trimming values of another plausible part, to show the inversion does
	// not depend on the datasheet example's numbers.
	other := &Calibration{T1: 28000, T2: 26000, T3: 50, P1: 37000, P2: -10500, P3: 3000, P4: 6000, P5: -60, P6: -7,
		P7: 9900, P8: -10230, P9: 4285, H1: 75, H2: 370, H3: 0, H4: 305, H5: 50, H6: 30}
	tests := []struct {
		name string
		opts bmxx80.Opts
		cal  *Calibration
	}{
		{"x1 F2 0.5ms", bmxx80.Opts{Temperature: bmxx80.O1x, Pressure: bmxx80.O1x, Humidity: bmxx80.O1x, Filter: bmxx80.F2, Standby: time.Millisecond}, nil},
		{"x2 F4 10ms", bmxx80.Opts{Temperature: bmxx80.O2x, Pressure: bmxx80.O2x, Humidity: bmxx80.O2x, Filter: bmxx80.F4, Standby: 10 * time.Millisecond}, nil},
		{"x16 F16 0.5ms", bmxx80.Opts{Temperature: bmxx80.O16x, Pressure: bmxx80.O16x, Humidity: bmxx80.O16x, Filter: bmxx80.F16, Standby: time.Millisecond}, nil},
		{"no humidity", bmxx80.Opts{Temperature: bmxx80.O1x, Pressure: bmxx80.O4x, Humidity: bmxx80.Off, Filter: bmxx80.F8, Standby: time.Millisecond}, nil},
		{"other calibration", bmxx80.Opts{Temperature: bmxx80.O2x, Pressure: bmxx80.O8x, Humidity: bmxx80.O1x, Filter: bmxx80.F4, Standby: time.Millisecond}, other},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newTestClock()
			f := NewFake(FakeConfig{Seed: SeedFor("pi-" + tc.name), Now: clk.Now, Calibration: tc.cal})
			dev, err := bmxx80.NewI2C(f, f.Addr(), &tc.opts)
			if err != nil {
				t.Fatalf("bmxx80.NewI2C: %v", err)
			}
			// A Sensor on the same bus: ReadFixed must give the driver's integers.
			s, err := NewSensor(f, f.Addr(), &tc.opts, false)
			if err != nil {
				t.Fatalf("NewSensor: %v", err)
			}
			const polls = 4000 // 10 s at 400 Hz
			var fresh int
			var lastSeq uint64
			for i := range polls {
				clk.Add(2500 * time.Microsecond)
				var e physic.Env
				if err := dev.Sense(&e); err != nil {
					t.Fatalf("poll %d: Sense: %v", i, err)
				}
				var fx Fixed
				if err := s.ReadFixed(&fx); err != nil {
					if f.Truth().Seq == 0 && errors.Is(err, ErrNotReady) {
						continue // before the first conversion; TestNotReady covers it
					}
					t.Fatalf("poll %d: ReadFixed: %v", i, err)
				}
				if fe := fixedEnv(&fx, tc.opts.Humidity != bmxx80.Off); fe != e {
					t.Fatalf("poll %d: ReadFixed %+v is %v, the driver read %v", i, fx, fe, e)
				}
				got, want, res := envValues(&e), f.Truth(), f.Resolution()
				if want.Seq == 0 {
					continue // no conversion yet
				}
				if want.Seq != lastSeq {
					fresh++
					lastSeq = want.Seq
				}
				check := func(what string, got, want, res float64) {
					if math.Abs(got-want) > res {
						t.Fatalf("poll %d: %s = %.5f, model %.5f, off by %.5f > resolution %.5f", i, what, got, want, math.Abs(got-want), res)
					}
				}
				check("temperature °C", got.TempC, want.TempC, res.TempC)
				check("pressure Pa", got.PressPa, want.PressPa, res.PressPa)
				if tc.opts.Humidity != bmxx80.Off {
					check("humidity %RH", got.HumRH, want.HumRH, res.HumRH)
				}
			}
			// The data registers change once per conversion, not per poll.
			rate := ConversionRate(&tc.opts, tc.opts.Humidity != bmxx80.Off)
			wantFresh := rate.Typical * polls * 0.0025
			if math.Abs(float64(fresh)-wantFresh) > 2 {
				t.Errorf("%d fresh readings in %d polls, want %.1f (%.1f conversions/s)", fresh, polls, wantFresh, rate.Typical)
			}
			t.Logf("%d polls, %d fresh (%.1f conversions/s)", polls, fresh, rate.Typical)
		})
	}
}

// TestTruthNearEnvironment checks that the noisy, filtered values stay close
// to the noise-free environment and that devices differ.
func TestTruthNearEnvironment(t *testing.T) {
	clk := newTestClock()
	a := NewFake(FakeConfig{Seed: SeedFor("pi-a"), Now: clk.Now})
	b := NewFake(FakeConfig{Seed: SeedFor("pi-b"), Now: clk.Now})
	opts := bmxx80.Opts{Temperature: bmxx80.O1x, Pressure: bmxx80.O1x, Humidity: bmxx80.O1x, Filter: bmxx80.F2, Standby: time.Millisecond}
	for _, f := range []*Fake{a, b} {
		if _, err := bmxx80.NewI2C(f, f.Addr(), &opts); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(time.Second)
	ta, tb := a.Truth(), b.Truth()
	env := a.Model().Env(ta.Time)
	for _, d := range []struct {
		what      string
		got, want float64
		within    float64
	}{
		{"temperature", ta.TempC, env.TempC, 0.05},
		{"pressure", ta.PressPa, env.PressPa, 15},
		{"humidity", ta.HumRH, env.HumRH, 0.2},
	} {
		if math.Abs(d.got-d.want) > d.within {
			t.Errorf("%s %.3f too far from environment %.3f", d.what, d.got, d.want)
		}
	}
	if ta.Values == tb.Values {
		t.Errorf("devices pi-a and pi-b produce the same values %+v", ta.Values)
	}
}
