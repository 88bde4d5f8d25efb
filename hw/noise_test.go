package hw

import (
	"math"
	"testing"
	"time"
)

// measureNoise runs the fake in normal mode with the given register fields
// and returns the RMS of (register value − reference) over n conversions,
// where the reference is the noise-free environment through the same IIR
// filter (so the filter's lag behind the drift does not count as noise).
func measureNoise(t *testing.T, osrsT, osrsP, osrsH, filter byte, n int) Values {
	t.Helper()
	clk := newTestClock()
	f := NewFake(FakeConfig{Seed: 31, Now: clk.Now})
	w := []byte{regCtrlHum, osrsH, regConfig, filter << 2, regCtrlMeas, osrsT<<5 | osrsP<<2 | 3}
	if err := f.Tx(f.Addr(), w, nil); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second) // let the filter settle
	coef := filterCoef(filter)
	var refT, refP float64
	var sT, sP, sH float64
	last := f.Truth().Seq
	for i := 0; i < n; {
		clk.Add(time.Millisecond)
		s := f.Truth()
		if s.Seq == last {
			continue
		}
		last = s.Seq
		env := f.Model().Env(s.Time)
		if i == 0 {
			refT, refP = env.TempC, env.PressPa
		}
		refT = (refT*(coef-1) + env.TempC) / coef
		refP = (refP*(coef-1) + env.PressPa) / coef
		sT += sq(s.TempC - refT)
		sP += sq(s.PressPa - refP)
		sH += sq(s.HumRH - env.HumRH)
		i++
	}
	return Values{TempC: math.Sqrt(sT / float64(n)), PressPa: math.Sqrt(sP / float64(n)), HumRH: math.Sqrt(sH / float64(n))}
}

// TestNoiseRMS checks the simulated noise against the model's figures per
// oversampling and filter setting.
func TestNoiseRMS(t *testing.T) {
	for _, tc := range []struct {
		name                string
		osrs, filter        byte // register fields
		wantT, wantP, wantH float64
	}{
		{"x1 no filter", 1, 0, noiseTemp(1), noisePress(1), noiseHum(1)},
		{"x16 no filter", 5, 0, noiseTemp(16), noisePress(16), noiseHum(16)},
		// IIR with coefficient c keeps 1/(2c−1) of white-noise variance; humidity is not filtered.
		{"x1 filter 16", 1, 4, noiseTemp(1) / math.Sqrt(31), noisePress(1) / math.Sqrt(31), noiseHum(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := measureNoise(t, tc.osrs, tc.osrs, tc.osrs, tc.filter, 4000)
			for _, c := range []struct {
				what      string
				got, want float64
			}{
				{"temperature", got.TempC, tc.wantT},
				{"pressure", got.PressPa, tc.wantP},
				{"humidity", got.HumRH, tc.wantH},
			} {
				if c.got < 0.9*c.want || c.got > 1.1*c.want {
					t.Errorf("%s RMS noise %.5f, want %.5f ±10%%", c.what, c.got, c.want)
				}
			}
		})
	}
}

// TestPressureNoiseMatchesDatasheetUseCases compares the simulated pressure
// noise with the RMS noise the BMP280 data sheet lists for its recommended
// settings (table 7, given in cm of altitude; 1 Pa ≈ 8.4 cm near sea level,
// the conversion behind the BME280's "0.2 Pa, equiv. to 1.7 cm").
func TestPressureNoiseMatchesDatasheetUseCases(t *testing.T) {
	const cmPerPa = 8.43
	for _, tc := range []struct {
		useCase              string
		osrsT, osrsP, filter byte
		cm                   float64
	}{
		{"weather monitoring: ×1, ×1, filter off", 1, 1, 0, 26.4},
		{"drop detection: ×2, ×1, filter off", 1, 2, 0, 20.8},
		{"handheld low-power: ×16, ×2, filter 4", 2, 5, 2, 4.0},
	} {
		t.Run(tc.useCase, func(t *testing.T) {
			got := measureNoise(t, tc.osrsT, tc.osrsP, 0, tc.filter, 3000).PressPa
			want := tc.cm / cmPerPa
			if got < 0.85*want || got > 1.15*want {
				t.Errorf("pressure RMS noise %.3f Pa, datasheet %.3f Pa (%.1f cm) ±15%%", got, want, tc.cm)
			}
		})
	}
}

func sq(x float64) float64 { return x * x }

// FuzzTx throws arbitrary transactions at the fake: it must never panic, and
// it must keep answering data reads afterwards.
func FuzzTx(f *testing.F) {
	f.Add(uint16(0x76), []byte{0xF4, 0x27, 0xF5, 0x04}, 0)
	f.Add(uint16(0x76), []byte{0xF7}, 8)
	f.Add(uint16(0x76), []byte{0xE0, 0xB6}, 0)
	f.Add(uint16(0x77), []byte{0xD0}, 1)
	f.Add(uint16(0x76), []byte{0xFF}, 2)
	f.Add(uint16(0x76), []byte{0xF4, 0x25}, 0)
	f.Add(uint16(0x76), []byte{0xF4, 0x27, 0xF5, 0xF0}, 0) // config written in normal mode
	f.Fuzz(func(t *testing.T, addr uint16, w []byte, n int) {
		n = n & 0x1FF
		r := make([]byte, n)
		for _, accept := range []bool{false, true} { // config writes in normal mode dropped or taken
			clk := newTestClock()
			fk := NewFake(FakeConfig{Now: clk.Now, AcceptConfigInNormalMode: accept})
			for range 3 {
				fk.Tx(addr, w, r)
				clk.Add(3 * time.Millisecond)
				var d [8]byte
				if err := fk.Tx(0x76, []byte{regData}, d[:]); err != nil {
					t.Fatalf("data read after %x: %v", w, err)
				}
			}
		}
	})
}
