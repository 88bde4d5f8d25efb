package hw

import "math"

// Calibration holds a BME280's factory trimming parameters as stored in the
// calibration registers 0x88..0xA1 and 0xE1..0xE7 (datasheet section 4.2.2,
// "Trimming parameter readout"). The fake bus serves these bytes to the
// driver and uses the same parameters to invert the compensation.
type Calibration struct {
	T1     uint16
	T2, T3 int16

	P1                             uint16
	P2, P3, P4, P5, P6, P7, P8, P9 int16

	H1 uint8
	H2 int16
	H3 uint8
	// H4 and H5 are signed 12-bit values, −2048..2047 (datasheet table
	// 16 gives them as signed short; 0xE4/0xE5/0xE6 hold bits 11..0, and
	// bit 11 is the sign, as Bosch's BME280_SensorAPI and Linux read them).
	// The registers keep only the low 12 bits of a value outside that range.
	H4 int16
	H5 int16
	H6 int8
}

// periphAgrees reports whether periph's bmxx80 (v3.7.4) decodes this
// calibration as the datasheet does. It parses dig_H4 and dig_H5 as
// unsigned 12-bit values, so with bit 11 set (a negative H4 or H5) its
// humidity is wrong; temperature and pressure do not depend on them.
func (c *Calibration) periphAgrees() bool { return c.H4 >= 0 && c.H5 >= 0 }

// signExtend12 returns the signed value of a 12-bit two's complement field.
func signExtend12(v uint16) int16 { return int16(v<<4) >> 4 }

// DefaultCalibration is the fake's calibration: the temperature and pressure
// parameters are the worked example of the BMP280 data sheet (section 3.12,
// which the BME280 shares register for register: T1=27504 … P9=6000); the humidity parameters are typical of
// production parts (H1=75, H2=362, H3=0, H4=313, H5=50, H6=30). With them a
// 20-bit raw temperature of 519888 compensates to 25.08 °C, as in that
// example, and raw humidity spans 0..100 %RH over the 16-bit range.
var DefaultCalibration = Calibration{
	T1: 27504, T2: 26435, T3: -1000,
	P1: 36477, P2: -10685, P3: 3024, P4: 2855, P5: 140, P6: -7, P7: 15500, P8: -14600, P9: 6000,
	H1: 75, H2: 362, H3: 0, H4: 313, H5: 50, H6: 30,
}

// registers returns the calibration as the chip stores it: 26 bytes at 0x88
// (0xA0 is unused, 0xA1 is H1) and 7 bytes at 0xE1.
func (c *Calibration) registers() (tph [26]byte, h [7]byte) {
	le := func(b []byte, v uint16) { b[0], b[1] = byte(v), byte(v>>8) }
	le(tph[0:], c.T1)
	le(tph[2:], uint16(c.T2))
	le(tph[4:], uint16(c.T3))
	le(tph[6:], c.P1)
	for i, p := range [...]int16{c.P2, c.P3, c.P4, c.P5, c.P6, c.P7, c.P8, c.P9} {
		le(tph[8+2*i:], uint16(p))
	}
	tph[25] = c.H1
	le(h[0:], uint16(c.H2))
	h[2] = c.H3
	// 0xE4 = H4[11:4], 0xE5 = H5[3:0]<<4 | H4[3:0], 0xE6 = H5[11:4]; a
	// negative value is stored in 12-bit two's complement.
	h[3] = byte(uint16(c.H4) >> 4)
	h[4] = byte(uint16(c.H5)&0xF)<<4 | byte(uint16(c.H4)&0xF)
	h[5] = byte(uint16(c.H5) >> 4)
	h[6] = byte(c.H6)
	return tph, h
}

// The compensation below is the datasheet's integer reference code (section
// 4.2.3): temperature in 0.01 °C plus t_fine, pressure in Pa/256 (64-bit
// version), humidity in %RH/1024. It is what periph's bmxx80 computes, and
// the fake uses it to find the raw values that produce the model's outputs.

// tFine returns the fine temperature shared by the three compensations.
func (c *Calibration) tFine(raw int32) int32 {
	x := ((raw>>3 - int32(c.T1)<<1) * int32(c.T2)) >> 11
	d := raw>>4 - int32(c.T1)
	y := (((d * d) >> 12) * int32(c.T3)) >> 14
	return x + y
}

// temp returns the temperature in 0.01 °C for t_fine.
func temp(tFine int32) int32 { return (tFine*5 + 128) >> 8 }

// press returns the pressure in Pa/256 (Q24.8).
func (c *Calibration) press(raw, tFine int32) uint32 {
	x := int64(tFine) - 128000
	y := x * x * int64(c.P6)
	y += (x * int64(c.P5)) << 17
	y += int64(c.P4) << 35
	x = (x*x*int64(c.P3))>>8 + (x*int64(c.P2))<<12
	x = ((int64(1)<<47 + x) * int64(c.P1)) >> 33
	if x == 0 {
		return 0
	}
	p := ((int64(1048576-raw)<<31 - y) * 3125) / x
	x = (int64(c.P9) * (p >> 13) * (p >> 13)) >> 25
	y = (int64(c.P8) * p) >> 19
	return uint32((p+x+y)>>8 + int64(c.P7)<<4)
}

// hum returns the relative humidity in %RH/1024 (Q22.10).
func (c *Calibration) hum(raw, tFine int32) uint32 {
	x := tFine - 76800
	x1 := raw<<14 - int32(c.H4)<<20 - int32(c.H5)*x
	x2 := (x1 + 16384) >> 15
	x3 := (x * int32(c.H6)) >> 10
	x4 := (x * int32(c.H3)) >> 11
	x5 := (x3 * (x4 + 32768)) >> 10
	x6 := ((x5+2097152)*int32(c.H2) + 8192) >> 14
	x = x2 * x6
	x -= (((x >> 15) * (x >> 15)) >> 7) * int32(c.H1) >> 4
	if x < 0 {
		x = 0
	}
	if x > 419430400 {
		x = 419430400
	}
	return uint32(x >> 12)
}

// humStep returns the humidity output step, in %RH, around raw humidity raw
// at tFine: the larger distance from hum(raw) to the nearest different
// output above and below. Where the output is clamped (0 or 100 %RH) many
// raw values give the same output, and the step is the jump to the first
// value off the clamp. The output's own 1/1024 %RH is the least step.
func (c *Calibration) humStep(raw, tFine int32) float64 {
	f := func(r int32) int64 { return int64(c.hum(r, tFine)) }
	out := f(raw)
	var step int64
	if up := searchUp(raw, maxRaw16, out+1, f); f(up) > out {
		step = f(up) - out
	}
	if down := searchUp(0, raw, out, f); down > 0 && f(down-1) < out {
		step = max(step, out-f(down-1))
	}
	return math.Max(float64(step), 1) / 1024
}

// Raw ADC ranges: temperature and pressure are 20-bit, humidity 16-bit.
const (
	maxRaw20 = 1<<20 - 1
	maxRaw16 = 1<<16 - 1
	// Reset (and "measurement skipped") values of the data registers.
	resetRaw20 = 0x80000
	resetRaw16 = 0x8000
)

// searchUp returns the smallest raw in [lo, hi] with f(raw) >= target for a
// non-decreasing f, or hi if there is none.
func searchUp(lo, hi int32, target int64, f func(int32) int64) int32 {
	for lo < hi {
		mid := lo + (hi-lo)/2
		if f(mid) >= target {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// nearest returns, among the multiples of step around r, the one whose f is
// closest to target. It corrects for the binary search landing on a plateau
// or next to a small non-monotonic step, and applies the ADC resolution.
func nearest(r, step, max int32, target int64, f func(int32) int64) int32 {
	base := r - r%step
	best, bestErr := int32(-1), int64(-1)
	for k := int32(-2); k <= 2; k++ {
		c := base + k*step
		if c < 0 || c > max {
			continue
		}
		e := f(c) - target
		if e < 0 {
			e = -e
		}
		if bestErr < 0 || e < bestErr {
			best, bestErr = c, e
		}
	}
	return best
}

// rawTemp returns the raw 20-bit temperature (a multiple of step) whose
// t_fine is closest to the temperature tempC.
func (c *Calibration) rawTemp(tempC float64, step int32) int32 {
	// temp = (tFine*5+128)>>8 in 0.01 °C, so tFine ≈ tempC*100*256/5 = tempC*5120.
	target := int64(tempC * 5120)
	f := func(r int32) int64 { return int64(c.tFine(r)) }
	return nearest(searchUp(0, maxRaw20, target, f), step, maxRaw20, target, f)
}

// rawPress returns the raw 20-bit pressure (a multiple of step) that
// compensates closest to pa at the given t_fine. Pressure falls as raw rises.
func (c *Calibration) rawPress(pa float64, tFine, step int32) int32 {
	target := int64(pa * 256)
	f := func(r int32) int64 { return -int64(c.press(r, tFine)) }
	return nearest(searchUp(0, maxRaw20, -target, f), step, maxRaw20, -target, f)
}

// rawHum returns the raw 16-bit humidity that compensates closest to rh.
func (c *Calibration) rawHum(rh float64, tFine int32) int32 {
	target := int64(rh * 1024)
	f := func(r int32) int64 { return int64(c.hum(r, tFine)) }
	return nearest(searchUp(0, maxRaw16, target, f), 1, maxRaw16, target, f)
}
