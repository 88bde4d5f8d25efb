package hw

import (
	"errors"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/conn/v3/physic"
)

// registerFake registers a fake as a periph I2C bus, so that Open runs the
// whole real path: host.Init, i2creg.Open, the chip id check, bmxx80.NewI2C.
func registerFake(t *testing.T, name string, f *Fake) {
	t.Helper()
	opener := func() (i2c.BusCloser, error) { return f, nil }
	if err := i2creg.Register(name, nil, -1, opener); err != nil {
		t.Fatalf("registering fake bus %s: %v", name, err)
	}
	t.Cleanup(func() { i2creg.Unregister(name) })
}

func TestOpen(t *testing.T) {
	t.Run("BME280", func(t *testing.T) {
		clk := newTestClock()
		f := NewFake(FakeConfig{Seed: 21, Addr: 0x77, Now: clk.Now})
		registerFake(t, "FAKE-OPEN-BME", f)
		s, err := Open(OpenConfig{Bus: "FAKE-OPEN-BME", Addr: 0x77, Opts: normalOpts})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		clk.Add(firstConversion)
		if !s.HasHumidity() || !strings.Contains(s.String(), "BME280 at 0x77") {
			t.Errorf("sensor %s, humidity %v", s, s.HasHumidity())
		}
		var e physic.Env
		for range 10 {
			if e, err = poll(s, clk); err != nil {
				t.Fatal(err)
			}
		}
		mustMatchTruth(t, f, e, true)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := poll(s, clk); !errors.Is(err, ErrClosed) && (err == nil || !strings.Contains(err.Error(), "closed")) {
			t.Errorf("Sense after Close: %v, want a closed-bus error", err)
		}
	})
	t.Run("BMP280 refused", func(t *testing.T) {
		f := NewFake(FakeConfig{ChipID: ChipIDBMP280})
		registerFake(t, "FAKE-OPEN-BMP", f)
		_, err := Open(OpenConfig{Bus: "FAKE-OPEN-BMP", Opts: normalOpts})
		if !errors.Is(err, ErrBMP280) {
			t.Fatalf("Open on a BMP280: %v, want ErrBMP280", err)
		}
		want := "the device at 0x76 on fake-bme280-i2c(0x76): device is a BMP280 (chip id 0x58), which has no humidity sensor"
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q\nwant it to contain %q", err, want)
		}
	})
	t.Run("no such bus", func(t *testing.T) {
		_, err := Open(OpenConfig{Bus: "NO-SUCH-BUS", Opts: normalOpts})
		if err == nil || !strings.Contains(err.Error(), "opening I2C bus NO-SUCH-BUS") {
			t.Fatalf("Open on a missing bus: %v", err)
		}
	})
}

func TestCalibrationRegistersRoundTrip(t *testing.T) {
	cals := []Calibration{
		DefaultCalibration,
		{T1: 28000, T2: 26000, T3: 50, P1: 37000, P2: -10500, P3: 3000, P4: 6000, P5: -60, P6: -7, P7: 9900, P8: -10230, P9: 4285,
			H1: 75, H2: 370, H3: 0, H4: 305, H5: 50, H6: 30},
		// H4 and H5 are signed 12-bit (datasheet table 16): the extremes.
		{T1: 1, T2: -1, T3: -32768, P1: 65535, H1: 255, H2: -2, H3: 255, H4: 2047, H5: 2047, H6: -128},
		{T1: 1, T2: -1, T3: -32768, P1: 65535, H1: 255, H2: -2, H3: 255, H4: -2048, H5: -2048, H6: -128},
	}
	for i, c := range cals {
		tph, h := c.registers()
		if got := parseCalibration(tph[:], h[:]); got != c {
			t.Errorf("calibration %d: registers parse back as %+v, want %+v", i, got, c)
		}
	}
}

// TestCompensationDatasheetExample checks the compensation against the
// datasheet's worked example (BMP280 data sheet section 3.12: raw T 519888,
// raw P 415148 give 25.08 °C and 100653 Pa).
func TestCompensationDatasheetExample(t *testing.T) {
	c := DefaultCalibration
	tf := c.tFine(519888)
	if tf != 128422 || temp(tf) != 2508 {
		t.Errorf("t_fine = %d, T = %d; want 128422, 2508", tf, temp(tf))
	}
	if p := c.press(415148, tf); p/256 != 100653 {
		t.Errorf("P = %d Pa/256 = %.2f Pa, want 100653.x", p, float64(p)/256)
	}
}

// TestInversion checks that the raw values the fake computes compensate to
// within one output step of the target across the sensor's range.
func TestInversion(t *testing.T) {
	c := DefaultCalibration
	for _, tc := range []struct{ tempC, pa, rh float64 }{
		{-40, 30000, 0}, {-10, 80000, 5}, {0, 95000, 10}, {21, 101325, 45}, {25.08, 100653.27, 50},
		{40, 105000, 80}, {65, 110000, 99}, {85, 110000, 100},
	} {
		rawT := c.rawTemp(tc.tempC, 1)
		tf := c.tFine(rawT)
		if got := float64(tf) / 5120; got < tc.tempC-0.001 || got > tc.tempC+0.001 {
			t.Errorf("%.2f °C: raw %d gives t_fine %.4f °C", tc.tempC, rawT, got)
		}
		rawP := c.rawPress(tc.pa, tf, 1)
		if got := float64(c.press(rawP, tf)) / 256; got < tc.pa-0.2 || got > tc.pa+0.2 {
			t.Errorf("%.2f Pa at %.2f °C: raw %d gives %.3f Pa", tc.pa, tc.tempC, rawP, got)
		}
		rawH := c.rawHum(tc.rh, tf)
		if got := float64(c.hum(rawH, tf)) / 1024; got < tc.rh-0.02 || got > tc.rh+0.02 {
			t.Errorf("%.2f %%RH at %.2f °C: raw %d gives %.4f %%RH", tc.rh, tc.tempC, rawH, got)
		}
	}
}

func TestModelDeterministic(t *testing.T) {
	clk := newTestClock()
	a, b := NewModel(SeedFor("pi-1")), NewModel(SeedFor("pi-1"))
	c := NewModel(SeedFor("pi-2"))
	for i := range 100 {
		at := clk.Now().Add(timeSeconds(float64(i) * 37.3))
		if a.Env(at) != b.Env(at) {
			t.Fatal("the same seed gives different environments")
		}
		if a.gauss(chPress, at.UnixNano()) != b.gauss(chPress, at.UnixNano()) {
			t.Fatal("the same seed gives different noise")
		}
		if a.Env(at) == c.Env(at) {
			t.Fatal("different seeds give the same environment")
		}
		v := a.Env(at)
		if v.TempC < 17 || v.TempC > 25 || v.PressPa < 100800 || v.PressPa > 101850 || v.HumRH < 35 || v.HumRH > 55 {
			t.Fatalf("environment %+v outside the model's bounds", v)
		}
	}
}
