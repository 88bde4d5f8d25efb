package hw

import (
	"errors"
	"math"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"
)

// driverRig is a fake read two ways at once: periph's bmxx80 in normal mode
// (Sense is one burst read) and a Sensor's ReadFixed. read checks that both
// give the same integers and returns the driver's values.
type driverRig struct {
	t   *testing.T
	clk *testClock
	f   *Fake
	dev *bmxx80.Dev
	s   *Sensor
}

func newDriverRig(t *testing.T, cfg FakeConfig, opts bmxx80.Opts) *driverRig {
	t.Helper()
	clk := newTestClock()
	sleepOn(t, clk)
	cfg.Now = clk.Now
	f := NewFake(cfg)
	t.Cleanup(func() { f.Close() })
	dev, err := bmxx80.NewI2C(f, f.Addr(), &opts)
	if err != nil {
		t.Fatalf("bmxx80.NewI2C: %v", err)
	}
	s, err := NewSensor(f, f.Addr(), &opts, cfg.ChipID == ChipIDBMP280)
	if err != nil {
		t.Fatalf("NewSensor: %v", err)
	}
	return &driverRig{t: t, clk: clk, f: f, dev: dev, s: s}
}

func (r *driverRig) read() (Values, Fixed) {
	r.t.Helper()
	var e physic.Env
	if err := r.dev.Sense(&e); err != nil {
		r.t.Fatalf("bmxx80 Sense: %v", err)
	}
	var fx Fixed
	if err := r.s.ReadFixed(&fx); err != nil {
		r.t.Fatalf("ReadFixed: %v", err)
	}
	if fe := fixedEnv(&fx, r.s.HasHumidity()); fe != e {
		r.t.Fatalf("ReadFixed %+v is %v, bmxx80 read %v", fx, fe, e)
	}
	return envValues(&e), fx
}

// noise reads n fresh conversions (a multiple of 32) through the driver and
// ReadFixed and returns, per quantity, the RMS of (reading − reference),
// where the reference is the noise-free environment through the same IIR
// filter for temperature and pressure (so the filter's lag behind the drift
// is not noise), and the noise as the data sheet measures it: the average
// standard deviation of 32 consecutive readings (BME280 data sheet section
// 3.6; BMP280 section 3.5). The two differ with the IIR filter on: its
// output is correlated over many readings, and a 32-reading window misses
// part of its variance (a third at filter coefficient 16).
func (r *driverRig) noise(n int) (rms, window Values) {
	r.clk.Add(time.Second) // let the filter settle
	var c [2]byte
	if err := r.f.Tx(r.f.Addr(), []byte{regConfig}, c[:1]); err != nil {
		r.t.Fatal(err)
	}
	coef := filterCoef(c[0] >> 2)
	var refT, refP, sT, sP, sH float64
	var win [3][32]float64
	var wsum [3]float64
	last := r.f.Truth().Seq
	for i := 0; i < n; {
		r.clk.Add(500 * time.Microsecond)
		tr := r.f.Truth()
		if tr.Seq == last {
			continue
		}
		last = tr.Seq
		got, _ := r.read()
		env := r.f.env(tr.Time)
		if i == 0 {
			refT, refP = env.TempC, env.PressPa
		}
		refT = (refT*(coef-1) + env.TempC) / coef
		refP = (refP*(coef-1) + env.PressPa) / coef
		sT += sq(got.TempC - refT)
		sP += sq(got.PressPa - refP)
		sH += sq(got.HumRH - env.HumRH)
		win[0][i%32], win[1][i%32], win[2][i%32] = got.TempC, got.PressPa, got.HumRH
		if i%32 == 31 {
			for q := range win {
				wsum[q] += stddev(win[q][:])
			}
		}
		i++
	}
	nw := float64(n / 32)
	return Values{TempC: math.Sqrt(sT / float64(n)), PressPa: math.Sqrt(sP / float64(n)), HumRH: math.Sqrt(sH / float64(n))},
		Values{TempC: wsum[0] / nw, PressPa: wsum[1] / nw, HumRH: wsum[2] / nw}
}

// stddev is the sample standard deviation.
func stddev(x []float64) float64 {
	var m, s float64
	for _, v := range x {
		m += v
	}
	m /= float64(len(x))
	for _, v := range x {
		s += sq(v - m)
	}
	return math.Sqrt(s / float64(len(x)-1))
}

// setConfig writes config the way a careful driver does: sleep, config,
// then ctrl_meas back in normal mode.
func (r *driverRig) setConfig(config byte) {
	r.t.Helper()
	var m [1]byte
	if err := r.f.Tx(r.f.Addr(), []byte{regCtrlMeas}, m[:]); err != nil {
		r.t.Fatal(err)
	}
	if err := r.f.Tx(r.f.Addr(), []byte{regCtrlMeas, m[0] &^ 3, regConfig, config, regCtrlMeas, m[0]}, nil); err != nil {
		r.t.Fatal(err)
	}
}

// TestHumidityNoiseDatasheet measures the humidity noise through bmxx80 and
// ReadFixed at every oversampling setting against the BME280 data sheet's
// table (section 3.6, noise in humidity), both as the RMS against the model
// and as the data sheet measures it (32-reading windows). The readings
// include the output quantisation (about 0.011 %RH), as the data sheet's do.
func TestHumidityNoiseDatasheet(t *testing.T) {
	for _, tc := range []struct {
		osrs bmxx80.Oversampling
		rms  float64 // %RH, data sheet
	}{
		{bmxx80.O1x, 0.07}, {bmxx80.O2x, 0.05}, {bmxx80.O4x, 0.04}, {bmxx80.O8x, 0.03}, {bmxx80.O16x, 0.02},
	} {
		t.Run(tc.osrs.String(), func(t *testing.T) {
			opts := bmxx80.Opts{Temperature: bmxx80.O1x, Pressure: bmxx80.O1x, Humidity: tc.osrs, Filter: bmxx80.F2, Standby: time.Millisecond}
			r := newDriverRig(t, FakeConfig{Seed: SeedFor("noise-h-" + tc.osrs.String())}, opts)
			rms, win := r.noise(2048)
			for _, got := range []float64{rms.HumRH, win.HumRH} {
				if got < 0.9*tc.rms || got > 1.1*tc.rms {
					t.Errorf("humidity noise %.4f %%RH at %s, data sheet %.2f ±10%%", got, tc.osrs, tc.rms)
				}
			}
			t.Logf("%s: RMS %.4f, 32-window %.4f %%RH (data sheet %.2f: %+.0f%%)", tc.osrs, rms.HumRH, win.HumRH, tc.rms, 100*(win.HumRH/tc.rms-1))
		})
	}
}

// TestPressureNoiseDatasheetUseCases measures the pressure noise through
// bmxx80 and ReadFixed for all six recommended settings of the BMP280 data
// sheet (table 7, RMS noise in cm; 1 Pa ≈ 8.43 cm near sea level). The fake
// is in normal mode for all of them (the noise does not depend on the mode;
// "weather monitoring" is forced mode at 1/min on the chip). Measured as the
// data sheet does (average standard deviation of 32 consecutive readings),
// the six cases are within −19 % … +9 % (bounds −20 % … +15 %); each case's
// figure is logged and listed in hw/README.md. The full RMS is higher with
// the filter on (up to +37 % with filter 16; see driverRig.noise): the
// model's white noise through the filter keeps 1/√(2c−1) of it, the chip's
// falls faster, so the truth lies between the two figures.
func TestPressureNoiseDatasheetUseCases(t *testing.T) {
	const cmPerPa = 8.43
	for _, tc := range []struct {
		useCase              string
		osrsT, osrsP, filter byte
		cm                   float64
	}{
		{"handheld low-power: ×16, ×2, filter 4", 2, 5, 2, 4.0},
		{"handheld dynamic: ×4, ×1, filter 16", 1, 3, 4, 2.4},
		{"weather monitoring: ×1, ×1, filter off", 1, 1, 0, 26.4},
		{"elevator: ×4, ×1, filter 4", 1, 3, 2, 6.4},
		{"drop detection: ×2, ×1, filter off", 1, 2, 0, 20.8},
		{"indoor navigation: ×16, ×2, filter 16", 2, 5, 4, 1.6},
	} {
		t.Run(tc.useCase, func(t *testing.T) {
			// bmxx80 uses normal mode only with a filter; set the filter
			// (or none) on the registers afterwards, as a driver would.
			opts := bmxx80.Opts{Temperature: bmxx80.Oversampling(tc.osrsT), Pressure: bmxx80.Oversampling(tc.osrsP), Humidity: bmxx80.Off,
				Filter: bmxx80.F2, Standby: time.Millisecond}
			r := newDriverRig(t, FakeConfig{Seed: SeedFor("noise-p-" + tc.useCase)}, opts)
			r.setConfig(tc.filter << 2)
			rms, win := r.noise(3008)
			got, want := win.PressPa, tc.cm/cmPerPa
			if got < 0.8*want || got > 1.15*want {
				t.Errorf("pressure noise %.3f Pa (32-reading windows), data sheet %.3f Pa (%.1f cm) −20 %% … +15 %%", got, want, tc.cm)
			}
			t.Logf("32-window %.3f Pa, data sheet %.3f Pa: %+.0f%% (full RMS %.3f Pa)", got, want, 100*(got/want-1), rms.PressPa)
		})
	}
}

// TestBMP280StandbyTable: t_sb codes 6 and 7 are 10 and 20 ms on a BME280
// but 2000 and 4000 ms on a BMP280 (BMP280 data sheet, table 11).
func TestBMP280StandbyTable(t *testing.T) {
	for _, tc := range []struct {
		chip    byte
		code    byte
		standby time.Duration
	}{
		{ChipIDBME280, 6, 10 * time.Millisecond}, {ChipIDBME280, 7, 20 * time.Millisecond},
		{ChipIDBMP280, 6, 2 * time.Second}, {ChipIDBMP280, 7, 4 * time.Second},
		{ChipIDBMP280, 5, time.Second}, {ChipIDBMP280, 0, 500 * time.Microsecond},
	} {
		clk := newTestClock()
		f := NewFake(FakeConfig{Seed: 40, Now: clk.Now, ChipID: tc.chip})
		// T ×1, P ×1, no humidity: t_measure 5.5 ms.
		if err := f.Tx(f.Addr(), []byte{regConfig, tc.code<<5 | 1<<2, regCtrlMeas, 1<<5 | 1<<2 | 3}, nil); err != nil {
			t.Fatal(err)
		}
		const run = 20 * time.Second
		for range 20 { // in steps: the fake simulates at most 512 conversions per look
			clk.Add(time.Second)
			f.Truth()
		}
		period := 5500*time.Microsecond + tc.standby
		want := uint64((run-5500*time.Microsecond)/period) + 1
		if got := f.Truth().Seq; got != want {
			t.Errorf("chip %#x, t_sb %d: %d conversions in %v, want %d (period %v)", tc.chip, tc.code, got, run, want, period)
		}
	}

	// Through bmxx80 (which picks code 6 for a 3 s standby on a BMP280) and
	// ReadFixed: a fresh reading every 2.0055 s.
	opts := bmxx80.Opts{Temperature: bmxx80.O1x, Pressure: bmxx80.O1x, Filter: bmxx80.F2, Standby: 3 * time.Second}
	r := newDriverRig(t, FakeConfig{Seed: 41, ChipID: ChipIDBMP280}, opts)
	var c [1]byte
	if err := r.f.Tx(r.f.Addr(), []byte{regConfig}, c[:]); err != nil || c[0]>>5 != 6 {
		t.Fatalf("bmxx80 wrote t_sb %d for 3 s on a BMP280 (%v), want 6", c[0]>>5, err)
	}
	rate := r.s.Rate()
	if want := 1 / 2.0055; math.Abs(rate.Typical-want) > 1e-6 || rate.Standby != 2*time.Second {
		t.Errorf("Sensor.Rate on a BMP280 = %+v, want %.4f/s with 2 s standby", rate, want)
	}
	if bme := ConversionRate(&opts, false); bme.Standby != time.Second {
		t.Errorf("ConversionRate (BME280) standby %v for 3 s, want 1 s (bmxx80's choice on a BME280)", bme.Standby)
	}
	var fresh int
	var prev [8]byte
	r.clk.Add(10 * time.Millisecond)
	for range 200 { // 20 s at 10 Hz
		r.clk.Add(100 * time.Millisecond)
		_, fx := r.read()
		if fx.Raw != prev {
			fresh++
			prev = fx.Raw
		}
	}
	if fresh != 10 {
		t.Errorf("%d fresh readings in 20 s on a BMP280 with 2 s standby, want 10", fresh)
	}
}

// TestResolutionAtHumidityClamps: at 0 and 100 %RH the compensation clamps,
// so many raw values give the same output; Resolution reports the jump to
// the nearest different output, found here by scanning every raw value with
// the data sheet's formula. Readings through bmxx80 and ReadFixed stay
// within it of the truth.
func TestResolutionAtHumidityClamps(t *testing.T) {
	scanned := map[[2]int64]float64{}
	for _, rh := range []float64{0, 0.05, 50, 99.95, 100} {
		env := func(time.Time) Values { return Values{TempC: 21, PressPa: 101325, HumRH: rh} }
		r := newDriverRig(t, FakeConfig{Seed: 42, Env: env}, normalOpts)
		r.clk.Add(firstConversion)
		var worst float64
		for range 200 {
			r.clk.Add(2500 * time.Microsecond)
			got, fx := r.read()
			tr, res := r.f.Truth(), r.f.Resolution()
			_, rawT, _ := rawValues(&fx.Raw)
			key := [2]int64{int64(fx.Hum), int64(r.f.cal.tFine(rawT))}
			want, ok := scanned[key]
			if !ok {
				want = scanHumStep(r.f.cal, fx.Hum, r.f.cal.tFine(rawT))
				scanned[key] = want
			}
			if res.HumRH != want {
				t.Fatalf("%.2f %%RH: Resolution %.5f %%RH at output %d, the outputs around it are %.5f apart", rh, res.HumRH, fx.Hum, want)
			}
			if d := math.Abs(got.HumRH - tr.HumRH); d > res.HumRH {
				t.Fatalf("%.2f %%RH: read %.5f, model %.5f, off by more than the resolution %.5f", rh, got.HumRH, tr.HumRH, res.HumRH)
			}
			worst = max(worst, res.HumRH)
		}
		t.Logf("%.2f %%RH: largest step %.4f %%RH", rh, worst)
	}
}

// scanHumStep returns the larger gap between output hum and the nearest
// different outputs any raw value gives at tFine (data sheet formula).
func scanHumStep(c Calibration, hum uint32, tFine int32) float64 {
	_, h := c.registers()
	below, above := int64(-1), int64(-1)
	for raw := int32(0); raw <= maxRaw16; raw++ {
		v := int64(dsHumidity(c.H1, h, raw, tFine))
		if v < int64(hum) && (below < 0 || v > below) {
			below = v
		}
		if v > int64(hum) && (above < 0 || v < above) {
			above = v
		}
	}
	var step int64 = 1
	if below >= 0 {
		step = max(step, int64(hum)-below)
	}
	if above >= 0 {
		step = max(step, above-int64(hum))
	}
	return float64(step) / 1024
}

func readStatus(t *testing.T, f *Fake) byte {
	t.Helper()
	var b [1]byte
	if err := f.Tx(f.Addr(), []byte{regStatus}, b[:]); err != nil {
		t.Fatal(err)
	}
	return b[0]
}

// TestIMUpdate: status bit 0 is set while the NVM is copied, for the 2 ms
// start-up time after a soft reset or power glitch and at the start of
// every conversion (datasheet 5.4.4).
func TestIMUpdate(t *testing.T) {
	clk := newTestClock()
	f := NewFake(FakeConfig{Seed: 43, Now: clk.Now})
	if st := readStatus(t, f); st != 0 {
		t.Fatalf("status %#x on a device powered earlier, want 0", st)
	}
	// Bosch's soft reset: write 0xB6, wait 2 ms, poll status until bit 0 clears.
	if err := f.Tx(f.Addr(), []byte{regReset, resetWord}, nil); err != nil {
		t.Fatal(err)
	}
	if st := readStatus(t, f); st != 1 {
		t.Fatalf("status %#x right after a soft reset, want im_update (1)", st)
	}
	clk.Add(1900 * time.Microsecond)
	if st := readStatus(t, f); st != 1 {
		t.Fatalf("status %#x 1.9 ms after a soft reset, want im_update (1)", st)
	}
	clk.Add(100 * time.Microsecond)
	if st := readStatus(t, f); st != 0 {
		t.Fatalf("status %#x 2 ms after a soft reset, want 0 (Bosch's driver fails otherwise)", st)
	}
	// Normal mode, ×1, standby 0.5 ms: a measurement starts every 8.5 ms.
	if err := f.Tx(f.Addr(), []byte{regCtrlHum, 1, regConfig, 1 << 2, regCtrlMeas, 1<<5 | 1<<2 | 3}, nil); err != nil {
		t.Fatal(err)
	}
	for _, st := range []struct {
		at   time.Duration
		want byte
	}{{0, 9}, {49 * time.Microsecond, 9}, {50 * time.Microsecond, 8}, {8 * time.Millisecond, 0}, {8500 * time.Microsecond, 9}, {8600 * time.Microsecond, 8}} {
		start := clk.Now()
		clk.Add(st.at)
		if got := readStatus(t, f); got != st.want {
			t.Errorf("normal mode, %v into the cycle: status %#x, want %#x", st.at, got, st.want)
		}
		clk.t = start
	}
	// Forced mode: the same at the start of the one measurement.
	if err := f.Tx(f.Addr(), []byte{regCtrlMeas, 1<<5 | 1<<2 | 1}, nil); err != nil {
		t.Fatal(err)
	}
	if st := readStatus(t, f); st != 9 {
		t.Errorf("forced mode at the start: status %#x, want 9", st)
	}
	clk.Add(100 * time.Microsecond)
	if st := readStatus(t, f); st != 8 {
		t.Errorf("forced mode 100 µs in: status %#x, want 8", st)
	}
}

// TestReinitWaitsForNVMCopy: after a reset, periph's bmxx80.NewI2C reads the
// calibration while the NVM copy runs (it does not look at im_update);
// Sensor.Reinit waits for the bit to clear first, as Bosch's driver does,
// and then reads through ReadFixed and bmxx80 as before.
func TestReinitWaitsForNVMCopy(t *testing.T) {
	r := newDriverRig(t, FakeConfig{Seed: 44}, normalOpts)
	r.clk.Add(firstConversion)
	r.read()

	r.f.Reset()
	if _, err := bmxx80.NewI2C(r.f, r.f.Addr(), &normalOpts); err != nil {
		t.Fatal(err)
	}
	if n := r.f.Stats().NVMCopyReads; n == 0 {
		t.Fatalf("bmxx80.NewI2C right after a reset: %d calibration reads during the NVM copy, want some (it does not wait)", n)
	}

	r.f.Reset()
	before, t0 := r.f.Stats().NVMCopyReads, r.clk.Now()
	if err := r.s.Reinit(); err != nil {
		t.Fatalf("Reinit after a reset: %v", err)
	}
	if n := r.f.Stats().NVMCopyReads; n != before {
		t.Errorf("Reinit read the calibration during the NVM copy (%d reads)", n-before)
	}
	if waited := r.clk.Now().Sub(t0); waited != nvmCopyReset {
		t.Errorf("Reinit waited %v, want the 2 ms start-up time", waited)
	}
	r.dev = mustDriver(t, r.f)
	r.clk.Add(firstConversion)
	got, _ := r.read()
	if tr := r.f.Truth(); math.Abs(got.PressPa-tr.PressPa) > r.f.Resolution().PressPa {
		t.Errorf("after Reinit: %+v, model %+v", got, tr.Values)
	}

	// In normal mode im_update marks the copy before each conversion; the
	// sensor was not reset, so Reinit does not wait for it.
	r.clk.t = r.f.next.Add(-r.f.tMeas) // a measurement starts now
	if st := readStatus(t, r.f); st&1 == 0 {
		t.Fatalf("status %#x at the start of a measurement, want im_update", st)
	}
	t0 = r.clk.Now()
	if err := r.s.Reinit(); err != nil || r.clk.Now() != t0 {
		t.Errorf("Reinit in normal mode: %v, waited %v; want no wait", err, r.clk.Now().Sub(t0))
	}

	// A sensor whose copy never ends: Reinit gives up after 5 waits.
	stuck := &stuckNVM{Bus: r.f}
	_, err := NewSensor(stuck, r.f.Addr(), &normalOpts, false)
	if !errors.Is(err, ErrNVMCopy) {
		t.Errorf("NewSensor on a sensor stuck in its NVM copy: %v, want ErrNVMCopy", err)
	}
}

func mustDriver(t *testing.T, f *Fake) *bmxx80.Dev {
	t.Helper()
	dev, err := bmxx80.NewI2C(f, f.Addr(), &normalOpts)
	if err != nil {
		t.Fatal(err)
	}
	return dev
}

// stuckNVM is a bus whose sensor reads as freshly reset, copying its NVM
// for ever: status im_update set, ctrl_meas sleep.
type stuckNVM struct{ i2c.Bus }

func (b *stuckNVM) Tx(addr uint16, w, r []byte) error {
	if err := b.Bus.Tx(addr, w, r); err != nil {
		return err
	}
	if len(w) == 1 && w[0] == regStatus && len(r) == 2 {
		r[0], r[1] = 1, 0
	}
	return nil
}

// TestConfigInNormalMode: a config write in normal mode (Linux's bmp280
// driver writes ctrl_meas = normal, then config) is ignored by default and
// counted; with AcceptConfigInNormalMode it takes effect at once (filter)
// and from the next cycle (standby). bmxx80 writes config in sleep mode, so
// it is unaffected either way.
func TestConfigInNormalMode(t *testing.T) {
	for _, accept := range []bool{false, true} {
		name := "ignored (default)"
		if accept {
			name = "accepted (AcceptConfigInNormalMode)"
		}
		t.Run(name, func(t *testing.T) {
			r := newDriverRig(t, FakeConfig{Seed: 45, AcceptConfigInNormalMode: accept}, normalOpts)
			if n := r.f.Stats().IgnoredConfigWrites; n != 0 {
				t.Fatalf("bmxx80's initialisation: %d config writes ignored, want 0", n)
			}
			// Linux's order: ctrl_meas (normal) first, then config (filter 16).
			if err := r.f.Tx(r.f.Addr(), []byte{regCtrlHum, 1, regCtrlMeas, 1<<5 | 1<<2 | 3, regConfig, 4 << 2}, nil); err != nil {
				t.Fatal(err)
			}
			var c [1]byte
			if err := r.f.Tx(r.f.Addr(), []byte{regConfig}, c[:]); err != nil {
				t.Fatal(err)
			}
			wantCfg, wantIgnored, coef := byte(0<<5|1<<2), uint64(1), 2.0 // bmxx80's F2, 0.5 ms
			if accept {
				wantCfg, wantIgnored, coef = 4<<2, 0, 16
			}
			if c[0] != wantCfg || r.f.Stats().IgnoredConfigWrites != wantIgnored {
				t.Fatalf("config %#x, %d ignored writes; want %#x, %d", c[0], r.f.Stats().IgnoredConfigWrites, wantCfg, wantIgnored)
			}
			rms, _ := r.noise(3008)
			got, want := rms.PressPa, noisePress(1)/math.Sqrt(2*coef-1)
			if got < 0.9*want || got > 1.15*want {
				t.Errorf("pressure noise %.3f Pa, want %.3f (filter %.0f)", got, want, coef)
			}
			// Standby 62.5 ms written in normal mode.
			if err := r.f.Tx(r.f.Addr(), []byte{regConfig, 1<<5 | c[0]&0x1C}, nil); err != nil {
				t.Fatal(err)
			}
			n0 := r.f.Truth().Seq
			r.clk.Add(710 * time.Millisecond)
			n := r.f.Truth().Seq - n0
			wantN := uint64(83) // 710 ms / 8.5 ms
			if accept {
				wantN = 11 // one 8.5 ms cycle, then 71 ms cycles
			}
			if n < wantN-1 || n > wantN+1 {
				t.Errorf("%d conversions in 710 ms after a standby write, want %d ±1", n, wantN)
			}
		})
	}
}
