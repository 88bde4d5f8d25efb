package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// freshness polls the lake's bronze, silver and gold Delta logs every
// 250 ms, as an independent reader would (the log and the add actions'
// statistics, nothing of the collector's memory), and reports how far
// behind now each table's newest event time is: bronze's newest reading
// (ts), silver's newest window end, gold's newest window end. A table not
// created yet counts from the first poll.
func freshness(ctx context.Context, c config) error {
	l, err := lake.NewLocal(c.freshness)
	if err != nil {
		return err
	}
	type table struct {
		name, col string
		add       int64 // µs added to the column's value: a window's end
		snap      *delta.Snapshot
		seen      map[string]bool
		newest    int64
		lags      []float64
	}
	tables := []*table{
		{name: schema.Bronze, col: "ts"},
		{name: schema.Silver, col: "window_end"},
		{name: schema.Gold, col: "window_start", add: time.Second.Microseconds()},
	}
	start := time.Now()
	measureFrom := start.Add(c.warmup)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for time.Since(measureFrom) < c.duration {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		now := time.Now()
		for _, t := range tables {
			snap, err := delta.LoadAfter(ctx, l, t.name, t.snap)
			if err != nil && !errors.Is(err, delta.ErrNoTable) {
				return fmt.Errorf("reading %s's log: %w", t.name, err)
			}
			if snap != nil {
				t.snap = snap
				if t.seen == nil {
					t.seen = map[string]bool{}
				}
				for _, f := range snap.Files() {
					if t.seen[f.Path] {
						continue
					}
					t.seen[f.Path] = true
					st, err := f.ParsedStats()
					if err != nil {
						continue
					}
					if v, ok := st.MaxValues[t.col]; ok {
						if us, err := delta.ParseStatsTime(v); err == nil {
							t.newest = max(t.newest, us+t.add)
						}
					}
				}
			}
			if now.Before(measureFrom) {
				continue
			}
			newest := t.newest
			if newest == 0 {
				newest = start.UnixMicro()
			}
			t.lags = append(t.lags, float64(now.UnixMicro()-newest)/1000)
		}
	}
	fmt.Printf("devices=%d rate_hz=%g batch_interval=%v seconds=%.0f polls=%d\n", c.devices, c.rate, c.batch, c.duration.Seconds(), len(tables[0].lags))
	for _, t := range tables {
		fmt.Printf("%s_lag_p50_ms=%.0f\n%s_lag_p95_ms=%.0f\n", t.name, pct(t.lags, 50), t.name, pct(t.lags, 95))
	}
	return nil
}
