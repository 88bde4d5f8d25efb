package sample

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"periph.io/x/conn/v3/physic"

	"github.com/pilake/pilake/hw"
)

// rawRecorder is the agent's sensor with a tap: after every successful read
// it records the data registers the reading came from.
type rawRecorder struct {
	*hw.Sensor
	fake *hw.Fake
	raws [][8]byte
}

func (r *rawRecorder) ReadFixed(f *hw.Fixed) error {
	err := r.Sensor.ReadFixed(f)
	if err == nil {
		r.raws = append(r.raws, f.Raw)
	}
	return err
}

func (r *rawRecorder) Sense(e *physic.Env) error {
	err := r.Sensor.Sense(e)
	if err == nil {
		// Virtual time stands still during a read: these are the registers
		// the reading came from.
		var b [8]byte
		if err := r.fake.Tx(r.fake.Addr(), []byte{0xF7}, b[:]); err != nil {
			return err
		}
		r.raws = append(r.raws, b)
	}
	return err
}

// dsCal holds the trimming parameters as the data sheet's table 16 defines
// them, decoded here from the register bytes, independently of package hw:
// dig_H4 and dig_H5 are signed 12-bit values.
type dsCal struct {
	t1                                 int64
	t2, t3                             int64
	p1, p2, p3, p4, p5, p6, p7, p8, p9 int64
	h1, h2, h3, h4, h5, h6             int32
}

func decodeCal(tph [26]byte, h [7]byte) dsCal {
	u := func(i int) int64 { return int64(uint16(tph[i]) | uint16(tph[i+1])<<8) }
	s := func(i int) int64 { return int64(int16(uint16(tph[i]) | uint16(tph[i+1])<<8)) }
	sign12 := func(v int32) int32 {
		if v&0x800 != 0 {
			v -= 0x1000
		}
		return v
	}
	return dsCal{
		t1: u(0), t2: s(2), t3: s(4),
		p1: u(6), p2: s(8), p3: s(10), p4: s(12), p5: s(14), p6: s(16), p7: s(18), p8: s(20), p9: s(22),
		h1: int32(tph[25]), h2: int32(int16(uint16(h[0]) | uint16(h[1])<<8)), h3: int32(h[2]),
		h4: sign12(int32(h[3])<<4 | int32(h[4]&0xF)),
		h5: sign12(int32(h[5])<<4 | int32(h[4]>>4)),
		h6: int32(int8(h[6])),
	}
}

// compensate is the data sheet's integer compensation (BME280 data sheet
// section 4.2.3: BME280_compensate_T_int32, BME280_compensate_P_int64,
// bme280_compensate_H_int32_t), written out from the data sheet.
func (c *dsCal) compensate(raw [8]byte) (temp int32, press, hum uint32) {
	adcP := int32(raw[0])<<12 | int32(raw[1])<<4 | int32(raw[2])>>4
	adcT := int32(raw[3])<<12 | int32(raw[4])<<4 | int32(raw[5])>>4
	adcH := int32(raw[6])<<8 | int32(raw[7])

	v1 := (((adcT >> 3) - int32(c.t1)<<1) * int32(c.t2)) >> 11
	v2 := (((((adcT >> 4) - int32(c.t1)) * ((adcT >> 4) - int32(c.t1))) >> 12) * int32(c.t3)) >> 14
	tFine := v1 + v2
	temp = (tFine*5 + 128) >> 8

	a := int64(tFine) - 128000
	b := a * a * c.p6
	b = b + (a*c.p5)<<17
	b = b + c.p4<<35
	a = (a*a*c.p3)>>8 + (a*c.p2)<<12
	a = ((int64(1)<<47 + a) * c.p1) >> 33
	if a != 0 {
		p := int64(1048576 - adcP)
		p = ((p<<31 - b) * 3125) / a
		a = (c.p9 * (p >> 13) * (p >> 13)) >> 25
		b = (c.p8 * p) >> 19
		press = uint32(((p + a + b) >> 8) + c.p7<<4)
	}

	v := tFine - 76800
	v = ((((adcH << 14) - (c.h4 << 20) - (c.h5 * v)) + 16384) >> 15) *
		(((((((v*c.h6)>>10)*(((v*c.h3)>>11)+32768))>>10)+2097152)*c.h2 + 8192) >> 14)
	v = v - (((((v >> 15) * (v >> 15)) >> 7) * c.h1) >> 4)
	v = min(max(v, 0), 419430400)
	return temp, press, uint32(v >> 12)
}

// TestReadingsMatchDatasheetWithSignedH4H5 runs the sampler, on both of its
// read paths, against a fake whose dig_H4/dig_H5 are negative (bit 11 set),
// and checks that every reading it records is the data sheet's integer
// compensation of the registers it read, with signed coefficients. periph's
// bmxx80 reads those coefficients unsigned; the agent must not take its
// humidity (hw.Sensor.Sense does not).
func TestReadingsMatchDatasheetWithSignedH4H5(t *testing.T) {
	cal := hw.DefaultCalibration
	cal.H4, cal.H5 = -8, -1000
	for _, driver := range []bool{false, true} {
		name := "ReadFixed"
		if driver {
			name = "bmxx80 Sense"
		}
		t.Run(name, func(t *testing.T) {
			clk := newVirtClock(2 * time.Second)
			fake := hw.NewFake(hw.FakeConfig{Seed: hw.SeedFor("pi-signed"), Now: clk.Now, Calibration: &cal})
			t.Cleanup(func() { _ = fake.Close() })
			sens, err := hw.NewSensor(fake, fake.Addr(), &normalOpts, false)
			if err != nil {
				t.Fatal(err)
			}
			rec := &rawRecorder{Sensor: sens, fake: fake}
			s, err := New(Options{
				Sensor: rec, DeviceID: "pi-signed", BootID: 1, Clock: clk, DriverSense: driver,
				ReadTimeout: 20 * time.Millisecond, QueueLen: 64,
				ClockSynced: func() bool { return true }, WallMinusMono: func() int64 { return 0 },
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			r := &rig{clk: clk, fake: fake, sens: sens, s: s}
			batches := r.run(t)

			var tph [26]byte
			var h [7]byte
			if err := fake.Tx(fake.Addr(), []byte{0x88}, tph[:]); err != nil {
				t.Fatal(err)
			}
			if err := fake.Tx(fake.Addr(), []byte{0xE1}, h[:]); err != nil {
				t.Fatal(err)
			}
			ds := decodeCal(tph, h)
			if ds.h4 != -8 || ds.h5 != -1000 {
				t.Fatalf("registers hold H4 %d, H5 %d; want -8, -1000", ds.h4, ds.h5)
			}
			var i int
			for _, b := range batches {
				for _, rd := range b.Readings {
					if i >= len(rec.raws) {
						t.Fatalf("more readings than reads")
					}
					temp, press, hum := ds.compensate(rec.raws[i])
					if rd.Temp != temp || rd.Press != press || rd.Hum != hum {
						t.Fatalf("reading %d: %d, %d, %d; data sheet with signed H4/H5: %d, %d, %d (registers % x)",
							i, rd.Temp, rd.Press, rd.Hum, temp, press, hum, rec.raws[i])
					}
					i++
				}
			}
			if i != len(rec.raws) || i < 700 {
				t.Fatalf("%d readings from %d reads in 2 s, want equal and about 800", i, len(rec.raws))
			}
		})
	}
}
