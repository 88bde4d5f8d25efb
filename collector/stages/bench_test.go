package stages_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
)

// BenchmarkPipeline measures readings/s through bronze, silver and gold into
// a local lake: b.N batches of 400 readings from 1000 devices at 400 Hz,
// submitted as the ingest side does, including the final commit.
func BenchmarkPipeline(b *testing.B) {
	const devices, per = 1000, 400
	batches := make([]*wire.Batch, b.N)
	for i := range batches {
		d, s := i%devices, i/devices
		bt := &wire.Batch{DeviceID: fmt.Sprintf("dev-%04d", d), BootID: 1, Seq: uint64(s + 1), IntervalUS: 2500, Readings: make([]wire.Reading, per)}
		ts := t0 + int64(s)*1_000_000 + int64(d)
		for j := range bt.Readings {
			bt.Readings[j] = wire.Reading{TimeUS: ts + int64(j)*2500, Temp: 2000 + int32(j%7), Press: 101325*256 + uint32(j%13), Hum: 40 * 1024, Fresh: j%4 == 0}
		}
		batches[i] = bt
	}
	l := newLake(b)
	p, err := stages.New(l, stages.Options{MaxSkew: -1, Now: clockAt(t0), SkipShutdownScan: true, Live: func(schema.LiveUpdate) {}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	go func() { errc <- p.Run(ctx) }()
	recv := time.UnixMicro(t0)
	for _, bt := range batches {
		if err := p.Submit(ctx, stages.Landed{Name: "landing/x", Batch: bt, ReceivedAt: recv, Source: "mqtt"}); err != nil {
			b.Fatal(err)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	b.StopTimer()
	st := p.Stats()
	if st.Readings != int64(b.N*per) {
		b.Fatalf("%d readings in bronze, want %d", st.Readings, b.N*per)
	}
	b.ReportMetric(float64(b.N*per)/el.Seconds(), "readings/s")
}
