package hw

import (
	"math"
	"testing"
	"time"

	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"
)

// Calibrations whose dig_H4/dig_H5 have bit 11 set (negative), which the
// datasheet allows (table 16: signed short). negH5 is an ordinary part with a
// negative temperature coefficient H5; negH4H5 sets bit 11 in both.
var (
	negH5   = func() *Calibration { c := DefaultCalibration; c.H5 = -30; return &c }()
	negH4H5 = func() *Calibration { c := DefaultCalibration; c.H4 = -8; c.H5 = -1000; return &c }()
)

// dsHumidity is the data sheet's humidity compensation (BME280 data sheet
// section 4.2.3, the 32-bit integer version), written out here from the data
// sheet independently of calib.go, with the trimming parameters decoded from
// the register bytes as table 16 gives them: dig_H4 and dig_H5 are signed
// 12-bit values (Bosch's BME280_SensorAPI and Linux sign-extend bit 11).
func dsHumidity(h1 byte, h [7]byte, rawH, tFine int32) uint32 {
	h2 := int32(int16(uint16(h[0]) | uint16(h[1])<<8))
	h3 := int32(h[2])
	h4 := int32(h[3])<<4 | int32(h[4]&0x0F)
	if h4&0x800 != 0 {
		h4 -= 0x1000
	}
	h5 := int32(h[5])<<4 | int32(h[4]>>4)
	if h5&0x800 != 0 {
		h5 -= 0x1000
	}
	h6 := int32(int8(h[6]))
	v := tFine - 76800
	v = ((((rawH << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15) *
		(((((((v*h6)>>10)*(((v*h3)>>11)+32768))>>10)+2097152)*h2 + 8192) >> 14)
	v = v - (((((v >> 15) * (v >> 15)) >> 7) * int32(h1)) >> 4)
	v = max(v, 0)
	v = min(v, 419430400)
	return uint32(v >> 12)
}

// TestParseSignedH4H5 decodes golden register bytes 0xE1..0xE7.
func TestParseSignedH4H5(t *testing.T) {
	for _, tc := range []struct {
		name   string
		e4e5e6 [3]byte
		h4, h5 int16
	}{
		{"DefaultCalibration (313, 50)", [3]byte{0x13, 0x29, 0x03}, 313, 50},
		{"largest positive", [3]byte{0x7F, 0xFF, 0x7F}, 2047, 2047},
		{"-1, -1", [3]byte{0xFF, 0xFF, 0xFF}, -1, -1},
		{"most negative", [3]byte{0x80, 0x00, 0x80}, -2048, -2048},
		{"H5 = -30 (0xFE2), H4 = 313", [3]byte{0x13, 0x29, 0xFE}, 313, -30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := [7]byte{0x6A, 0x01, 0x00, tc.e4e5e6[0], tc.e4e5e6[1], tc.e4e5e6[2], 0x1E}
			var tph [26]byte
			c := parseCalibration(tph[:], h[:])
			if c.H4 != tc.h4 || c.H5 != tc.h5 || c.H2 != 362 || c.H6 != 30 {
				t.Errorf("% x parses as H2 %d H4 %d H5 %d H6 %d; want 362, %d, %d, 30", h, c.H2, c.H4, c.H5, c.H6, tc.h4, tc.h5)
			}
			if _, got := c.registers(); got != h {
				t.Errorf("registers() = % x, want % x", got, h)
			}
		})
	}
	// Outside −2048..2047 only the low 12 bits reach the registers, and the
	// fake computes with what they hold.
	c := DefaultCalibration
	c.H4, c.H5 = 4095, 2048
	f := NewFake(FakeConfig{Calibration: &c})
	if f.cal.H4 != -1 || f.cal.H5 != -2048 {
		t.Errorf("fake with H4 4095, H5 2048 computes with %d, %d; want -1, -2048", f.cal.H4, f.cal.H5)
	}
}

// TestHumidityMatchesDatasheetSigned compares pilake's compensation with the
// data sheet formula over the raw range, at temperatures from −40 to 85 °C.
func TestHumidityMatchesDatasheetSigned(t *testing.T) {
	for _, cal := range []*Calibration{&DefaultCalibration, negH5, negH4H5} {
		_, h := cal.registers()
		for _, tempC := range []float64{-40, -10, 0, 15, 25, 60, 85} {
			tf := cal.tFine(cal.rawTemp(tempC, 1))
			for raw := int32(0); raw <= maxRaw16; raw += 97 {
				if got, want := cal.hum(raw, tf), dsHumidity(cal.H1, h, raw, tf); got != want {
					t.Fatalf("H4 %d H5 %d, %.0f °C, raw %d: %d, data sheet %d", cal.H4, cal.H5, tempC, raw, got, want)
				}
			}
		}
	}
}

// TestSignedH4H5ThroughDriverAndReadFixed runs a fake whose H4/H5 are
// negative through periph's bmxx80, Sensor.Sense and Sensor.ReadFixed.
// Temperature and pressure agree everywhere; humidity from ReadFixed and
// Sense equals the data sheet formula with signed coefficients and the
// model within the resolution; bmxx80's own humidity does not (it reads
// H4/H5 unsigned), which is why Sensor does not use it for such parts.
func TestSignedH4H5ThroughDriverAndReadFixed(t *testing.T) {
	for _, tc := range []struct {
		name string
		cal  *Calibration
	}{{"H5 -30", negH5}, {"H4 -8 H5 -1000", negH4H5}} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newTestClock()
			f := NewFake(FakeConfig{Seed: SeedFor("signed " + tc.name), Now: clk.Now, Calibration: tc.cal})
			dev, err := bmxx80.NewI2C(f, f.Addr(), &normalOpts)
			if err != nil {
				t.Fatal(err)
			}
			s, err := NewSensor(f, f.Addr(), &normalOpts, false)
			if err != nil {
				t.Fatal(err)
			}
			_, hcal := tc.cal.registers()
			clk.Add(firstConversion)
			var worstPeriph float64
			for i := range 400 {
				clk.Add(2500 * time.Microsecond)
				var raw [8]byte
				if err := f.Tx(f.Addr(), []byte{regData}, raw[:]); err != nil {
					t.Fatal(err)
				}
				rawP, rawT, rawH := rawValues(&raw)
				tf := tc.cal.tFine(rawT)
				want := dsHumidity(tc.cal.H1, hcal, rawH, tf)

				var fx Fixed
				if err := s.ReadFixed(&fx); err != nil {
					t.Fatalf("poll %d: ReadFixed: %v", i, err)
				}
				if fx.Raw != raw || fx.Hum != want || fx.Temp != temp(tf) || fx.Press != tc.cal.press(rawP, tf) {
					t.Fatalf("poll %d: ReadFixed %+v, want hum %d (data sheet, signed H4/H5)", i, fx, want)
				}
				var se, de physic.Env
				if err := s.Sense(&se); err != nil {
					t.Fatalf("poll %d: Sense: %v", i, err)
				}
				if se != fixedEnv(&fx, true) {
					t.Fatalf("poll %d: Sense %v, ReadFixed %v", i, se, fixedEnv(&fx, true))
				}
				mustMatchTruth(t, f, se, true)
				if err := dev.Sense(&de); err != nil {
					t.Fatal(err)
				}
				if de.Temperature != se.Temperature || de.Pressure != se.Pressure {
					t.Fatalf("poll %d: bmxx80 T/P %v, Sensor %v", i, de, se)
				}
				worstPeriph = max(worstPeriph, math.Abs(envValues(&de).HumRH-envValues(&se).HumRH))
			}
			// bmxx80 v3.7.4 decodes H4/H5 unsigned (+4096): its humidity is
			// far off. If a later version fixes it, this fails: update
			// hw/README.md and Sensor.Sense.
			if worstPeriph < 1 {
				t.Errorf("bmxx80's humidity within %.3f %%RH of the data sheet's: has periph fixed dig_H4/dig_H5?", worstPeriph)
			}
			t.Logf("bmxx80 humidity off by up to %.1f %%RH", worstPeriph)
		})
	}
}
