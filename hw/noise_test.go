package hw

import (
	"math"
	"testing"
	"time"
)

// TestNoiseRMS checks the simulated noise against the model's figures: the
// RMS of (register value − environment) over many conversions, per
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
			clk := newTestClock()
			f := NewFake(FakeConfig{Seed: 31, Now: clk.Now})
			w := []byte{regCtrlHum, tc.osrs, regConfig, tc.filter << 2, regCtrlMeas, tc.osrs<<5 | tc.osrs<<2 | 3}
			if err := f.Tx(f.Addr(), w, nil); err != nil {
				t.Fatal(err)
			}
			clk.Add(time.Second) // let the filter settle
			// The reference is the environment through the same IIR filter,
			// so that the filter's lag behind the drift does not count as noise.
			coef := filterCoef(tc.filter)
			var refT, refP float64
			var sT, sP, sH float64
			const n = 4000
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
			for _, c := range []struct {
				what      string
				got, want float64
			}{
				{"temperature", math.Sqrt(sT / n), tc.wantT},
				{"pressure", math.Sqrt(sP / n), tc.wantP},
				{"humidity", math.Sqrt(sH / n), tc.wantH},
			} {
				if c.got < 0.9*c.want || c.got > 1.1*c.want {
					t.Errorf("%s RMS noise %.5f, want %.5f ±10%%", c.what, c.got, c.want)
				}
			}
		})
	}
}

func sq(x float64) float64 { return x * x }

// FuzzTx throws arbitrary transactions at the fake: it must never panic, and
// reads must return exactly the requested length.
func FuzzTx(f *testing.F) {
	f.Add(uint16(0x76), []byte{0xF4, 0x27, 0xF5, 0x04}, 0)
	f.Add(uint16(0x76), []byte{0xF7}, 8)
	f.Add(uint16(0x76), []byte{0xE0, 0xB6}, 0)
	f.Add(uint16(0x77), []byte{0xD0}, 1)
	f.Add(uint16(0x76), []byte{0xFF}, 2)
	f.Add(uint16(0x76), []byte{0xF4, 0x25}, 0)
	f.Fuzz(func(t *testing.T, addr uint16, w []byte, n int) {
		clk := newTestClock()
		fk := NewFake(FakeConfig{Now: clk.Now})
		n = n & 0x1FF
		r := make([]byte, n)
		for range 3 {
			fk.Tx(addr, w, r)
			clk.Add(3 * time.Millisecond)
			var d [8]byte
			if err := fk.Tx(0x76, []byte{regData}, d[:]); err != nil {
				t.Fatalf("data read after %x: %v", w, err)
			}
		}
	})
}
