package hw

import (
	"testing"
	"time"

	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"
)

var benchFixed Fixed

// BenchmarkSense measures one 400 Hz poll: a fake-bus burst read (including
// the model's conversions that fall due, about one per 3.4 polls at ×1)
// and periph bmxx80's integer compensation.
func BenchmarkSense(b *testing.B) {
	for _, bc := range []struct {
		name string
		read func(dev *bmxx80.Dev, s *Sensor, e *physic.Env) error
	}{
		{"bmxx80", func(dev *bmxx80.Dev, _ *Sensor, e *physic.Env) error { return dev.Sense(e) }},
		{"Sensor", func(_ *bmxx80.Dev, s *Sensor, e *physic.Env) error { return s.Sense(e) }},
		{"ReadFixed", func(_ *bmxx80.Dev, s *Sensor, _ *physic.Env) error { return s.ReadFixed(&benchFixed) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			clk := newTestClock()
			f := NewFake(FakeConfig{Seed: 1, Now: clk.Now})
			s, err := NewSensor(f, f.Addr(), &normalOpts, false)
			if err != nil {
				b.Fatal(err)
			}
			dev := s.dev
			clk.Add(firstConversion)
			var e physic.Env
			b.ReportAllocs()
			for b.Loop() {
				clk.Add(2500 * time.Microsecond)
				if err := bc.read(dev, s, &e); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(f.Stats().Conversions)/float64(b.N), "conversions/op")
		})
	}
}

// BenchmarkConversion measures one conversion of the model: environment,
// noise, filter and the raw-value inversion.
func BenchmarkConversion(b *testing.B) {
	clk := newTestClock()
	f := NewFake(FakeConfig{Seed: 1, Now: clk.Now})
	if _, err := bmxx80.NewI2C(f, f.Addr(), &normalOpts); err != nil {
		b.Fatal(err)
	}
	t := clk.Now()
	b.ReportAllocs()
	for b.Loop() {
		t = t.Add(8500 * time.Microsecond)
		f.mu.Lock()
		f.convert(t, true)
		f.mu.Unlock()
	}
}
