package hw

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"
)

// normalOpts is the agent's configuration: normal mode, ×1, 400 Hz capable.
var normalOpts = bmxx80.Opts{
	Temperature: bmxx80.O1x, Pressure: bmxx80.O1x, Humidity: bmxx80.O1x,
	Filter: bmxx80.F2, Standby: time.Millisecond,
}

// newSensor returns a fake on a manual clock and a Sensor on it.
func newSensor(t *testing.T, cfg FakeConfig) (*Fake, *Sensor, *testClock) {
	t.Helper()
	clk := newTestClock()
	sleepOn(t, clk)
	cfg.Now = clk.Now
	f := NewFake(cfg)
	t.Cleanup(func() { f.Close() })
	s, err := NewSensor(f, f.Addr(), &normalOpts, false)
	if err != nil {
		t.Fatalf("NewSensor: %v", err)
	}
	clk.Add(firstConversion)
	return f, s, clk
}

// sleepOn makes the Sensor's sleeps (waiting out an NVM copy) advance clk.
func sleepOn(t *testing.T, clk *testClock) {
	t.Helper()
	prev := doSleep
	doSleep = clk.Add
	t.Cleanup(func() { doSleep = prev })
}

// firstConversion is enough time for the first conversion at ×1 (9.3 ms at most).
const firstConversion = 10 * time.Millisecond

// poll advances the clock by one 400 Hz tick and reads the sensor.
func poll(s *Sensor, clk *testClock) (physic.Env, error) {
	clk.Add(2500 * time.Microsecond)
	var e physic.Env
	err := s.Sense(&e)
	return e, err
}

// mustMatchTruth fails unless a reading equals the fake's truth within the
// sensor's resolution.
func mustMatchTruth(t *testing.T, f *Fake, e physic.Env, hum bool) {
	t.Helper()
	got, want, res := envValues(&e), f.Truth(), f.Resolution()
	if math.Abs(got.TempC-want.TempC) > res.TempC || math.Abs(got.PressPa-want.PressPa) > res.PressPa ||
		(hum && math.Abs(got.HumRH-want.HumRH) > res.HumRH) {
		t.Fatalf("reading %+v does not match the model %+v (resolution %+v)", got, want.Values, res)
	}
}

func TestFailNext(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		wantMsg string
	}{
		{"nack", nil, "NACK"},
		{"io error", errors.New("input/output error"), "input/output error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, s, clk := newSensor(t, FakeConfig{Seed: 7})
			before := f.Stats()
			f.FailNext(3, tc.err)
			for i := range 3 {
				_, err := poll(s, clk)
				if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("poll %d: err = %v, want one mentioning %q", i, err, tc.wantMsg)
				}
			}
			e, err := poll(s, clk)
			if err != nil {
				t.Fatalf("poll after the faults: %v", err)
			}
			mustMatchTruth(t, f, e, true)
			if got := f.Stats().Failed - before.Failed; got != 3 {
				t.Errorf("Stats.Failed grew by %d, want 3", got)
			}
		})
	}
}

func TestWrongAddressNACKs(t *testing.T) {
	f := NewFake(FakeConfig{})
	_, err := NewSensor(f, 0x77, &normalOpts, false)
	if !errors.Is(err, ErrNACK) {
		t.Fatalf("NewSensor at 0x77 with the device at 0x76: err = %v, want ErrNACK", err)
	}
	if _, err := bmxx80.NewI2C(f, 0x77, &normalOpts); err == nil {
		t.Fatal("bmxx80.NewI2C at the wrong address succeeded")
	}
	if _, err := NewSensor(f, 0x42, &normalOpts, false); !errors.Is(err, ErrBadAddress) {
		t.Fatalf("NewSensor at 0x42: err = %v, want ErrBadAddress", err)
	}
}

func TestStallBlocksUntilRelease(t *testing.T) {
	f, s, clk := newSensor(t, FakeConfig{Seed: 8})
	blocked := f.Stall()
	res := make(chan error, 1)
	go func() {
		_, err := poll(s, clk)
		res <- err
	}()
	<-blocked
	select {
	case err := <-res:
		t.Fatalf("Sense returned (%v) on a stalled bus", err)
	default:
	}
	f.Release()
	if err := <-res; err != nil {
		t.Fatalf("Sense after Release: %v", err)
	}
	var e physic.Env
	var err error
	for range 10 {
		if e, err = poll(s, clk); err != nil {
			t.Fatal(err)
		}
	}
	mustMatchTruth(t, f, e, true)
}

func TestStallTimeoutAndClose(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		f, s, clk := newSensor(t, FakeConfig{Seed: 9, StallTimeout: time.Millisecond})
		f.Stall()
		if _, err := poll(s, clk); err == nil || !strings.Contains(err.Error(), ErrStallTimeout.Error()) {
			t.Fatalf("Sense on a stalled bus with a timeout: err = %v, want %v", err, ErrStallTimeout)
		}
		f.Release()
		if _, err := poll(s, clk); err != nil {
			t.Fatalf("Sense after Release: %v", err)
		}
	})
	t.Run("close", func(t *testing.T) {
		f, s, clk := newSensor(t, FakeConfig{Seed: 10})
		blocked := f.Stall()
		res := make(chan error, 1)
		go func() {
			_, err := poll(s, clk)
			res <- err
		}()
		<-blocked
		f.Close()
		if err := <-res; err == nil || !strings.Contains(err.Error(), ErrClosed.Error()) {
			t.Fatalf("Sense blocked when the bus closed: err = %v, want %v", err, ErrClosed)
		}
	})
}

func TestBMP280(t *testing.T) {
	clk := newTestClock()
	f := NewFake(FakeConfig{Seed: 11, Now: clk.Now, ChipID: ChipIDBMP280})
	_, err := NewSensor(f, f.Addr(), &normalOpts, false)
	if !errors.Is(err, ErrBMP280) || !strings.Contains(err.Error(), "0x76") {
		t.Fatalf("NewSensor on a BMP280: err = %v, want ErrBMP280 naming the address", err)
	}
	t.Log(err)
	s, err := NewSensor(f, f.Addr(), &normalOpts, true)
	if err != nil {
		t.Fatalf("NewSensor on a BMP280, allowed: %v", err)
	}
	clk.Add(firstConversion)
	if s.HasHumidity() || s.ChipID() != ChipIDBMP280 {
		t.Fatalf("HasHumidity = %v, ChipID = %#x on a BMP280", s.HasHumidity(), s.ChipID())
	}
	var hum [2]byte
	if err := f.Tx(f.Addr(), []byte{0xFD}, hum[:]); err != nil || hum != [2]byte{} {
		t.Fatalf("BMP280 humidity registers read %v, %v; want 0, 0", hum, err)
	}
	for range 100 {
		e, err := poll(s, clk)
		if err != nil {
			t.Fatal(err)
		}
		var fx Fixed
		if err := s.ReadFixed(&fx); err != nil {
			t.Fatal(err)
		}
		if e.Humidity != 0 || fx.Hum != 0 || fixedEnv(&fx, false) != e {
			t.Fatalf("BMP280: driver read %v, ReadFixed %+v; want equal and no humidity", e, fx)
		}
		if f.Truth().Seq > 0 {
			mustMatchTruth(t, f, e, false)
		}
	}
}

func TestUnknownChip(t *testing.T) {
	f := NewFake(FakeConfig{})
	f.SetChipID(0x61)
	_, err := NewSensor(f, f.Addr(), &normalOpts, true)
	if !errors.Is(err, ErrNotBME280) || !strings.Contains(err.Error(), "BME680") {
		t.Fatalf("NewSensor on chip id 0x61: err = %v, want ErrNotBME280 naming a BME680", err)
	}
}

func TestResetMidRun(t *testing.T) {
	for _, how := range []string{"Reset", "soft reset register"} {
		t.Run(how, func(t *testing.T) {
			f, s, clk := newSensor(t, FakeConfig{Seed: 12})
			// A bare driver next to the Sensor, as an agent without the
			// Sensor wrapper would have it.
			bare, err := bmxx80.NewI2C(f, f.Addr(), &normalOpts)
			if err != nil {
				t.Fatal(err)
			}
			for range 20 {
				if _, err := poll(s, clk); err != nil {
					t.Fatal(err)
				}
			}
			if how == "Reset" {
				f.Reset()
			} else if err := f.Tx(f.Addr(), []byte{regReset, resetWord}, nil); err != nil {
				t.Fatal(err)
			}
			var ctrl [1]byte
			if err := f.Tx(f.Addr(), []byte{regCtrlMeas}, ctrl[:]); err != nil || ctrl[0] != 0 {
				t.Fatalf("ctrl_meas after reset = %#x, %v; want 0", ctrl[0], err)
			}
			// The bare driver reads the reset values without any error.
			var e physic.Env
			if err := bare.Sense(&e); err != nil {
				t.Fatalf("bare driver after a reset: %v", err)
			}
			if want := driverEnv(&DefaultCalibration, resetRaw20, resetRaw20, resetRaw16, true, true); e != want {
				t.Fatalf("bare driver after a reset read %v, want the reset values %v", e, want)
			}
			for range 10 {
				_, err = poll(s, clk)
				if !errors.Is(err, ErrSensorReset) {
					t.Fatalf("Sense after a reset: err = %v, want ErrSensorReset", err)
				}
				var fx Fixed
				if err := s.ReadFixed(&fx); !errors.Is(err, ErrSensorReset) {
					t.Fatalf("ReadFixed after a reset: err = %v, want ErrSensorReset", err)
				}
			}
			if err := s.Reinit(); err != nil {
				t.Fatalf("Reinit: %v", err)
			}
			clk.Add(firstConversion)
			for range 20 {
				e, err = poll(s, clk)
				if err != nil {
					t.Fatalf("Sense after Reinit: %v", err)
				}
			}
			mustMatchTruth(t, f, e, true)
		})
	}
}

func TestFreeze(t *testing.T) {
	f, s, clk := newSensor(t, FakeConfig{Seed: 13})
	first, err := poll(s, clk)
	for range 10 {
		first, err = poll(s, clk)
	}
	if err != nil {
		t.Fatal(err)
	}
	f.Freeze(true)
	frozen := f.Truth()
	conv := f.Stats().Conversions
	for range 400 {
		e, err := poll(s, clk)
		if err != nil {
			t.Fatal(err)
		}
		if e != first {
			t.Fatalf("reading changed while frozen: %v, then %v", first, e)
		}
	}
	if f.Truth().Seq != frozen.Seq {
		t.Error("Truth advanced while frozen")
	}
	if f.Stats().Conversions == conv {
		t.Error("the sensor stopped converting while frozen; only the registers should stop")
	}
	f.Freeze(false)
	changed := false
	for range 10 {
		e, err := poll(s, clk)
		if err != nil {
			t.Fatal(err)
		}
		changed = changed || e != first
		mustMatchTruth(t, f, e, true)
	}
	if !changed {
		t.Error("readings did not change after unfreezing")
	}
}

// TestConcurrentUse reads from several goroutines while another injects and
// clears faults; run with -race. Every error must be one of the injected
// kinds, and reads must work again once the faults are cleared.
func TestConcurrentUse(t *testing.T) {
	f, s, clk := newSensor(t, FakeConfig{Seed: 14})
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			var bad error
			for i := 0; ; i++ {
				select {
				case <-stop:
					errs <- bad
					return
				default:
				}
				clk.Add(100 * time.Microsecond)
				var err error
				if (g+i)%2 == 0 {
					var e physic.Env
					err = s.Sense(&e)
				} else {
					var fx Fixed
					err = s.ReadFixed(&fx)
				}
				if err != nil && !errors.Is(err, ErrSensorReset) && !errors.Is(err, ErrNotReady) && !strings.Contains(err.Error(), "NACK") && bad == nil {
					bad = err
				}
			}
		}()
	}
	for i := range 300 {
		switch i % 5 {
		case 0:
			f.FailNext(2, nil)
		case 1:
			f.Freeze(i%2 == 0)
		case 2:
			f.Reset()
		case 3:
			_ = f.Truth()
			_ = f.Resolution()
		case 4:
			if err := s.Reinit(); err != nil && !strings.Contains(err.Error(), "NACK") {
				t.Errorf("Reinit: %v", err)
			}
		}
	}
	close(stop)
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("unexpected error from a concurrent read: %v", err)
		}
	}
	f.FailNext(0, nil)
	f.Freeze(false)
	if err := s.Reinit(); err != nil {
		t.Fatal(err)
	}
	clk.Add(firstConversion)
	var e physic.Env
	var err error
	for range 10 {
		if e, err = poll(s, clk); err != nil {
			t.Fatal(err)
		}
	}
	mustMatchTruth(t, f, e, true)
}

// TestNotReady: between configuration and the first conversion the data
// registers hold reset values. A bare driver turns them into plausible
// nonsense without an error; Sensor reports ErrNotReady.
func TestNotReady(t *testing.T) {
	clk := newTestClock()
	f := NewFake(FakeConfig{Seed: 15, Now: clk.Now})
	s, err := NewSensor(f, f.Addr(), &normalOpts, false)
	if err != nil {
		t.Fatal(err)
	}
	bare, err := bmxx80.NewI2C(f, f.Addr(), &normalOpts) // configures again: t = 0
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(7 * time.Millisecond) // t_measure is 8 ms
	var e physic.Env
	if err := bare.Sense(&e); err != nil {
		t.Fatal(err)
	}
	if v := envValues(&e); math.Abs(v.PressPa-82044.5) > 1 {
		t.Fatalf("bare driver before the first conversion read %+v, want the reset values' 82044.5 Pa", v)
	}
	if err := s.Sense(&e); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Sense before the first conversion: %v, want ErrNotReady", err)
	}
	var fx Fixed
	if err := s.ReadFixed(&fx); !errors.Is(err, ErrNotReady) {
		t.Fatalf("ReadFixed before the first conversion: %v, want ErrNotReady", err)
	}
	clk.Add(time.Millisecond)
	if err := s.Sense(&e); err != nil {
		t.Fatalf("Sense after the first conversion: %v", err)
	}
	mustMatchTruth(t, f, e, true)
	if err := s.ReadFixed(&fx); err != nil || fixedEnv(&fx, true) != e {
		t.Fatalf("ReadFixed after the first conversion: %+v, %v; want %v", fx, err, e)
	}
	// A real reading that shares a value with the reset values passes.
	if err := s.checkState(true, false); err != nil {
		t.Fatalf("checkState on an intact configuration: %v", err)
	}
}

// TestResetInForcedMode: bmxx80's forced mode rewrites ctrl_meas on every
// Sense, so after a reset temperature and pressure come back but humidity
// (ctrl_hum = 0) stays at its reset value; Sensor notices. The fake runs on
// the real clock because the driver sleeps for real in forced mode.
func TestResetInForcedMode(t *testing.T) {
	f := NewFake(FakeConfig{Seed: 16})
	opts := bmxx80.Opts{Temperature: bmxx80.O1x, Pressure: bmxx80.O1x, Humidity: bmxx80.O1x}
	s, err := NewSensor(f, f.Addr(), &opts, false)
	if err != nil {
		t.Fatal(err)
	}
	s.checkEvery = 3 // instead of 256, to keep the test short: each Sense sleeps 8 ms
	var e physic.Env
	if err := s.Sense(&e); err != nil {
		t.Fatal(err)
	}
	f.Reset()
	for i := 0; ; i++ {
		err := s.Sense(&e)
		if errors.Is(err, ErrSensorReset) {
			break
		}
		if err != nil || i == 3 {
			t.Fatalf("Sense %d in forced mode after a reset: %v (read %v), want ErrSensorReset within 3 reads", i, err, e)
		}
	}
	if err := s.Reinit(); err != nil {
		t.Fatal(err)
	}
	if err := s.Sense(&e); err != nil {
		t.Fatalf("Sense after Reinit: %v", err)
	}
}
