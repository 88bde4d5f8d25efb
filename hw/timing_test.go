package hw

import (
	"math"
	"testing"
	"time"

	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"
)

func TestConversionRate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     bmxx80.Opts
		humidity bool
		typ, min float64
	}{
		// Datasheet 9.1: 1 + 2 + 2.5 + 2.5 = 8 ms typical, 1.25 + 2.3 + 2.875 + 2.875 = 9.3 ms max.
		{"forced x1", bmxx80.Opts{Temperature: bmxx80.O1x, Pressure: bmxx80.O1x, Humidity: bmxx80.O1x}, true, 125, 1000 / 9.3},
		{"forced x1 BMP280", bmxx80.Opts{Temperature: bmxx80.O1x, Pressure: bmxx80.O1x, Humidity: bmxx80.O1x}, false, 1000 / 5.5, 1000 / 6.425},
		// Datasheet 9.1 example: T ×1, P ×4, no humidity = 11.5 ms; 9.3: with 62.5 ms standby, 13.51 Hz.
		{"datasheet example", bmxx80.Opts{Temperature: bmxx80.O1x, Pressure: bmxx80.O4x, Filter: bmxx80.F8, Standby: 62500 * time.Microsecond}, false, 1000 / 74.0, 1000 / (1.25 + 2.3 + 9.2 + 0.575 + 62.5)},
		{"normal x1 0.5ms", normalOpts, true, 1000 / 8.5, 1000 / 9.8},
		{"normal x16 20ms", bmxx80.Opts{Temperature: bmxx80.O16x, Pressure: bmxx80.O16x, Humidity: bmxx80.O16x, Filter: bmxx80.F16, Standby: 20 * time.Millisecond}, true, 1000.0 / (98 + 20), 1000 / (1.25 + 3*36.8 + 2*0.575 + 20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ConversionRate(&tc.opts, tc.humidity)
			if math.Abs(r.Typical-tc.typ) > 0.01 || math.Abs(r.Min-tc.min) > 0.01 {
				t.Errorf("ConversionRate = %.3f typical, %.3f min; want %.3f, %.3f", r.Typical, r.Min, tc.typ, tc.min)
			}
		})
	}
}

// TestNormalModeTiming checks, at register level, that the data registers
// change only when a conversion completes and status bit 3 is set while one
// runs.
func TestNormalModeTiming(t *testing.T) {
	clk := newTestClock()
	f := NewFake(FakeConfig{Seed: 3, Now: clk.Now})
	// ×1 everything, standby 0.5 ms, filter 2: t_measure 8 ms, cycle 8.5 ms.
	w := []byte{regCtrlHum, 1, regConfig, 0<<5 | 1<<2, regCtrlMeas, 1<<5 | 1<<2 | 3}
	if err := f.Tx(f.Addr(), w, nil); err != nil {
		t.Fatal(err)
	}
	read := func() (data [8]byte, status byte) {
		var b [1]byte
		if err := f.Tx(f.Addr(), []byte{regData}, data[:]); err != nil {
			t.Fatal(err)
		}
		if err := f.Tx(f.Addr(), []byte{regStatus}, b[:]); err != nil {
			t.Fatal(err)
		}
		return data, b[0]
	}
	reset := [8]byte{0x80, 0, 0, 0x80, 0, 0, 0x80, 0}
	steps := []struct {
		at        time.Duration // since the ctrl_meas write
		measuring bool
		changed   bool
	}{
		{0, true, false},
		{7900 * time.Microsecond, true, false},
		{8000 * time.Microsecond, false, true}, // first conversion done
		{8400 * time.Microsecond, false, false},
		{8500 * time.Microsecond, true, false}, // second measurement starts
		{16400 * time.Microsecond, true, false},
		{16500 * time.Microsecond, false, true},
		{100 * time.Millisecond, true, true},
	}
	start := clk.Now()
	prev := reset
	for _, st := range steps {
		clk.Add(start.Add(st.at).Sub(clk.Now()))
		data, status := read()
		if got := status&8 != 0; got != st.measuring {
			t.Errorf("at %v: measuring = %v, want %v", st.at, got, st.measuring)
		}
		if got := data != prev; got != st.changed {
			t.Errorf("at %v: data changed = %v, want %v", st.at, got, st.changed)
		}
		prev = data
	}
	if n := f.Truth().Seq; n != 11 { // completions at 8 + 8.5k ms ≤ 100 ms: k = 0..10
		t.Errorf("%d conversions in 100 ms, want 11", n)
	}
}

func TestForcedModeRegisters(t *testing.T) {
	clk := newTestClock()
	f := NewFake(FakeConfig{Seed: 4, Now: clk.Now})
	tx := func(w []byte, n int) []byte {
		r := make([]byte, n)
		if err := f.Tx(f.Addr(), w, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	tx([]byte{regCtrlHum, 1, regCtrlMeas, 1<<5 | 1<<2 | 1}, 0)
	if st := tx([]byte{regStatus}, 1)[0]; st&8 == 0 {
		t.Fatalf("status = %#x right after a forced-mode write, want measuring", st)
	}
	clk.Add(8 * time.Millisecond)
	if st := tx([]byte{regStatus}, 1)[0]; st&8 != 0 {
		t.Fatalf("status = %#x after t_measure, want idle", st)
	}
	if ctrl := tx([]byte{regCtrlMeas}, 1)[0]; ctrl&3 != 0 {
		t.Fatalf("ctrl_meas mode = %d after a forced conversion, want sleep", ctrl&3)
	}
	if f.Truth().Seq != 1 {
		t.Fatal("no conversion after a forced-mode write")
	}
	clk.Add(time.Second)
	if got := f.Truth().Seq; got != 1 {
		t.Fatalf("%d conversions after one forced write, want 1", got)
	}
	// Without the filter the ADC resolution is 16 bit at ×1: low 4 bits 0.
	d := tx([]byte{regData}, 8)
	if d[2]&0xF0 != 0 || d[5]&0xF0 != 0 {
		t.Errorf("xlsb registers %#x %#x: want 16-bit results at ×1 without the filter", d[2], d[5])
	}
}

// TestCtrlHumLatch: ctrl_hum takes effect only after a ctrl_meas write
// (datasheet 5.4.3); config writes are ignored in normal mode (5.4.6).
func TestCtrlHumLatchAndConfigInNormalMode(t *testing.T) {
	clk := newTestClock()
	f := NewFake(FakeConfig{Seed: 5, Now: clk.Now})
	hum := func() [2]byte {
		var b [2]byte
		if err := f.Tx(f.Addr(), []byte{0xFD}, b[:]); err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Normal mode with humidity skipped, then ctrl_hum = ×1 without a ctrl_meas write.
	if err := f.Tx(f.Addr(), []byte{regConfig, 1 << 2, regCtrlMeas, 1<<5 | 1<<2 | 3, regCtrlHum, 1}, nil); err != nil {
		t.Fatal(err)
	}
	clk.Add(50 * time.Millisecond)
	if h := hum(); h != [2]byte{0x80, 0} {
		t.Fatalf("humidity %x measured before ctrl_meas was written", h)
	}
	if err := f.Tx(f.Addr(), []byte{regCtrlMeas, 1<<5 | 1<<2 | 3}, nil); err != nil {
		t.Fatal(err)
	}
	clk.Add(50 * time.Millisecond)
	if h := hum(); h == [2]byte{0x80, 0} {
		t.Fatal("humidity not measured after the ctrl_meas write")
	}
	// A config write in normal mode is ignored.
	if err := f.Tx(f.Addr(), []byte{regConfig, 5 << 5}, nil); err != nil {
		t.Fatal(err)
	}
	var c [1]byte
	if err := f.Tx(f.Addr(), []byte{regConfig}, c[:]); err != nil || c[0] != 1<<2 {
		t.Fatalf("config = %#x after a write in normal mode, want the old %#x", c[0], 1<<2)
	}
}

// TestForcedModeThroughDriver runs bmxx80's default forced mode, which sleeps
// for real; the fake therefore runs on the real clock here.
func TestForcedModeThroughDriver(t *testing.T) {
	f := NewFake(FakeConfig{Seed: 6})
	opts := bmxx80.Opts{Temperature: bmxx80.O1x, Pressure: bmxx80.O2x, Humidity: bmxx80.O1x}
	dev, err := bmxx80.NewI2C(f, f.Addr(), &opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		var e physic.Env
		if err := dev.Sense(&e); err != nil {
			t.Fatal(err)
		}
		got, want, res := envValues(&e), f.Truth(), f.Resolution()
		if want.Seq != uint64(i+1) {
			t.Fatalf("Sense %d: %d conversions, want one per Sense", i, want.Seq)
		}
		// 16-bit temperature, 17-bit pressure without the filter.
		if math.Abs(got.TempC-want.TempC) > res.TempC || math.Abs(got.PressPa-want.PressPa) > res.PressPa || math.Abs(got.HumRH-want.HumRH) > res.HumRH {
			t.Fatalf("Sense %d: %+v, model %+v, resolution %+v", i, got, want.Values, res)
		}
		if res.PressPa < 1 {
			t.Errorf("pressure resolution %.3f Pa at 17 bit, want about 1.3", res.PressPa)
		}
	}
}
