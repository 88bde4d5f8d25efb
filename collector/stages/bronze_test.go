package stages

import (
	"fmt"
	"math"
	"syscall"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/schema"
)

// simBatches makes n batches of per readings at 400 Hz shaped like the load
// generator's (collector/loadgen): slow sine waves plus a little noise, a
// fresh conversion every fourth reading, timestamps with a few µs of jitter.
func simBatches(n, per int, t0 int64) ([][]wire.Reading, []schema.BronzeRow) {
	readings := make([][]wire.Reading, n)
	tmpls := make([]schema.BronzeRow, n)
	for k := range readings {
		phase := float64(k) / float64(n) * 2 * math.Pi
		rs := make([]wire.Reading, per)
		for i := range rs {
			m := k*per + i
			conv := m - m%4
			rs[i] = wire.Reading{
				TimeUS: t0 + int64(k)*1_000_000 + int64(i)*2500 + int64(m%7),
				Temp:   2150 + int32(200*math.Sin(phase+float64(conv)/4000)) + int32(conv%3),
				Press:  uint32(101325*256 + 256*int(50*math.Cos(phase+float64(conv)/8000)) + conv%5),
				Hum:    uint32(45*1024 + int(1024*math.Sin(phase+float64(conv)/6000)) + conv%11),
				Fresh:  m%4 == 0,
			}
		}
		readings[k] = rs
		tmpls[k] = schema.BronzeRow{Device: fmt.Sprintf("sim-%05d", k%5000), Boot: int64(k%5000) * 7919, Seq: int64(k/5000 + 1),
			ReceivedAt: t0 + int64(k)*1_000_000 + 1_000_000, Source: "mqtt"}
	}
	return readings, tmpls
}

// BenchmarkBronzeEncode measures the bronze encoder (encodeBronze and
// bronzeWriter) on its own: b.N batches of 400 readings, cut into files of
// 2,500 batches (1M readings, MaxEpochRows' default), each closed.
func BenchmarkBronzeEncode(b *testing.B) {
	const per, perFile = 400, 2500
	readings, tmpls := simBatches(512, per, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro())
	for _, compatible := range []bool{false, true} {
		b.Run(fmt.Sprintf("compatible=%v", compatible), func(b *testing.B) {
			jobs := make(chan bronzeJob, 64)
			done := make(chan struct{})
			bw := newBronzeWriter(perFile*per*4, compatible)
			go func() {
				encodeBronze(jobs, bw, func(*wire.Batch) {})
				close(done)
			}()
			var size, rows int64
			cut := func() {
				reply := make(chan *bronzeWriter, 1)
				jobs <- bronzeJob{cut: reply, next: newBronzeWriter(perFile*per*4, compatible)}
				w := <-reply
				data, err := w.close()
				if err != nil {
					b.Fatal(err)
				}
				size += int64(len(data))
				rows += w.n
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuNow()
			for i := range b.N {
				k := i % len(readings)
				jobs <- bronzeJob{readings: readings[k], tmpl: tmpls[k]}
				if (i+1)%perFile == 0 {
					cut()
				}
			}
			cut()
			cpu := cpuNow() - cpu0
			b.StopTimer()
			close(jobs)
			<-done
			if rows != int64(b.N*per) {
				b.Fatalf("%d rows written, want %d", rows, b.N*per)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(rows), "ns/reading")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(rows), "cpu_ns/reading")
			b.ReportMetric(float64(size)/float64(rows), "bytes/reading")
		})
	}
}

// cpuNow is the process's CPU time (user+system, all threads).
func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
