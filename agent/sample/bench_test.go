package sample

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"periph.io/x/conn/v3/physic"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/hw"
)

// BenchmarkPipeline measures, per reading, the agent's hot path at 400 Hz on
// the simulator: a read of the fake bus (one 8-byte burst), compensation to
// fixed point, freshness, batching, and encoding (wire v1, once per 400
// readings, amortised). Virtual time advances 2.5 ms per reading so the fake
// converts at its real rate (~118/s) and the values are the simulator's
// realistic signal and noise. "fixed" is the agent's default path
// (hw.Sensor.ReadFixed); "driver" goes through periph's bmxx80 Sense and
// FromEnv. Each reading is also observed into a Prometheus histogram, as
// the sampler does with the agent's lateness histogram.
func BenchmarkPipeline(b *testing.B) {
	for _, path := range []string{"fixed", "driver"} {
		b.Run(path, func(b *testing.B) {
			now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
			fake := hw.NewFake(hw.FakeConfig{Seed: hw.SeedFor("pi-bench"), Now: func() time.Time { return now }})
			sens, err := hw.NewSensor(fake, fake.Addr(), &normalOpts, false)
			if err != nil {
				b.Fatal(err)
			}
			now = now.Add(10 * time.Millisecond) // first conversion done
			enc := wire.NewEncoder(wire.Binary)
			batch := &wire.Batch{DeviceID: "pi-bench", BootID: 1, Seq: 1, IntervalUS: 2500, Readings: make([]wire.Reading, 0, 400)}
			var (
				buf               []byte
				encoded, nEncoded int64
				prevT             int32
				prevP, prevH      uint32
				fx                hw.Fixed
				e                 physic.Env
				fresh             int64
			)
			var lateness Observer = prometheus.NewHistogram(prometheus.HistogramOpts{
				Name: "lateness_seconds", Buckets: []float64{1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3},
			})
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				now = now.Add(2500 * time.Microsecond)
				lateness.Observe(float64(i%64) * 1e-6)
				var t int32
				var p, h uint32
				if path == "fixed" {
					if err := sens.ReadFixed(&fx); err != nil {
						b.Fatal(err)
					}
					t, p, h = fx.Temp, fx.Press, fx.Hum
				} else {
					if err := sens.Sense(&e); err != nil {
						b.Fatal(err)
					}
					t, p, h = FromEnv(&e)
				}
				isFresh := t != prevT || p != prevP || h != prevH
				prevT, prevP, prevH = t, p, h
				if isFresh {
					fresh++
				}
				batch.Readings = append(batch.Readings, wire.Reading{TimeUS: now.UnixMicro(), Temp: t, Press: p, Hum: h, Fresh: isFresh})
				if len(batch.Readings) == 400 {
					if buf, err = enc.Append(buf[:0], batch); err != nil {
						b.Fatal(err)
					}
					encoded += int64(len(buf))
					nEncoded += 400
					batch.Seq++
					batch.Readings = batch.Readings[:0]
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/reading")
			if nEncoded > 0 {
				b.ReportMetric(float64(encoded)/float64(nEncoded), "bytes/reading")
			}
			b.ReportMetric(float64(fresh)/float64(b.N), "fresh/reading")
		})
	}
}
