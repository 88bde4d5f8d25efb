package stages_test

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
)

// BenchmarkPipeline measures readings/s through bronze, silver and gold into
// a local lake: b.N batches of 400 readings (1 s at 400 Hz) round-robin from
// N devices, submitted as the ingest side does (already decoded), including
// the final flush and commit. Batches are built on the submitting goroutine
// (a copy of a template with shifted timestamps, as a decoder would produce).
func BenchmarkPipeline(b *testing.B) {
	for _, devices := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("devices=%d", devices), func(b *testing.B) { benchPipeline(b, devices) })
	}
}

func benchPipeline(b *testing.B, devices int) {
	const per = 400
	ids := make([]string, devices)
	for d := range ids {
		ids[d] = fmt.Sprintf("dev-%05d", d)
	}
	tmpl := make([]wire.Reading, per)
	for j := range tmpl {
		tmpl[j] = wire.Reading{TimeUS: int64(j) * 2500, Temp: 2000 + int32(j%7), Press: 101325*256 + uint32(j%13), Hum: 40 * 1024, Fresh: j%4 == 0}
	}
	l := newLake(b)
	p, err := stages.New(l, stages.Options{MaxSkew: -1, Clock: clockAt(t0), SkipShutdownScan: true, Live: func(schema.LiveUpdate) {},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	var ms runtime.MemStats
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	cpu0 := cpuTime()
	go func() { errc <- p.Run(ctx) }()
	recv := time.UnixMicro(t0)
	for i := range b.N {
		d, s := i%devices, i/devices
		bt := &wire.Batch{DeviceID: ids[d], BootID: 1, Seq: uint64(s + 1), IntervalUS: 2500, Readings: make([]wire.Reading, per)}
		base := t0 + int64(s)*1_000_000 + int64(d)
		for j := range bt.Readings {
			bt.Readings[j] = tmpl[j]
			bt.Readings[j].TimeUS += base
		}
		if err := p.Submit(ctx, landing.Landed{Name: "landing/x", Batch: bt, ReceivedAt: recv, Source: "mqtt"}); err != nil {
			b.Fatal(err)
		}
	}
	runtime.ReadMemStats(&ms)
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	if st := p.Stats(); st.Readings != int64(b.N*per) {
		b.Fatalf("%d readings in bronze, want %d", st.Readings, b.N*per)
	}
	b.ReportMetric(float64(b.N*per)/el.Seconds(), "readings/s")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap_MiB")
	// CPU time (user+system, all goroutines) per reading: steadier than
	// readings/s on a shared machine, and what an end-to-end budget adds up.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*per), "cpu_ns/reading")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
