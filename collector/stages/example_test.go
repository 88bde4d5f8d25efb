package stages_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
)

// Run the stages over one landed batch, stop cleanly, and read silver.
func Example() {
	dir, _ := os.MkdirTemp("", "lake")
	defer os.RemoveAll(dir)
	l, _ := lake.NewLocal(dir)

	p, err := stages.New(l, stages.Options{
		MaxSkew: -1, // the example's readings are from 2026-01-01
		Logger:  slog.New(slog.DiscardHandler),
		Live:    func(u schema.LiveUpdate) { /* publish on wire.LiveTopic(u.Device) */ },
	})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	b := &wire.Batch{DeviceID: "pi-1", BootID: 1, Seq: 1, IntervalUS: 2500}
	for i := range 400 {
		b.Readings = append(b.Readings, wire.Reading{TimeUS: 1_767_225_600_000_000 + int64(i)*2500, Temp: 2150, Press: 101325 * 256, Hum: 40 * 1024, Fresh: true})
	}
	// The ingest side lands it first, in a segment (collector/landing's
	// Lander does this and submits what it landed).
	data, _ := wire.NewEncoder(wire.Binary).Append(nil, b)
	recv := time.Now()
	name := landing.SegmentName(recv, "00000000000000e1", 1)
	seg := landing.EncodeSegment([]landing.SegmentRecord{{ReceivedAt: recv, Source: "mqtt", Payload: data}})
	if err := l.PutIfAbsent(ctx, name, seg); err != nil {
		panic(err)
	}
	if err := p.Submit(ctx, landing.Landed{Name: name, SegmentRecords: 1, Batch: b, ReceivedAt: recv, Source: "mqtt"}); err != nil {
		panic(err)
	}

	stop() // a clean shutdown finalises every open window
	if err := <-done; err != nil {
		panic(err)
	}
	silver, _ := delta.ReadTable[schema.SilverRow](context.Background(), l, schema.Silver, nil)
	fmt.Println(len(silver), silver[0].Count, silver[0].TempAvg)
	// Output: 1 400 21.5
}
