package stages

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// compact runs the tables' maintenance after an epoch (on the committer's
// goroutine): compaction by time (delta.Compact: closed hours and days),
// and every MaintenanceInterval the landing lifecycle, with vacuum every
// VacuumInterval and Delta log cleanup every LogCleanupInterval by the
// tables' own retention properties. Failures
// are logged; the next round tries again.
func (c *committer) compact(ctx context.Context, processed json.RawMessage) {
	o := delta.CompactOptions{Skipped: func(f delta.AddFile, reason error) {
		// A file with a deletion vector (another writer's): compaction
		// steps aside rather than rewrite it.
		c.m.count(func(s *Stats) { s.CompactSkipped++ })
		if c.skipLogged == nil {
			c.skipLogged = map[string]bool{}
		}
		if !c.skipLogged[f.Path] {
			c.skipLogged[f.Path] = true
			c.log.Info("compaction leaves a file alone", slog.String("file", f.Path), slog.Any("reason", reason))
		}
	}}
	var n int
	var err error
	for _, name := range []string{schema.Bronze, schema.Silver, schema.SilverLate, schema.Gold} {
		var k int
		t := c.tables[name]
		switch name {
		case schema.Bronze:
			k, err = delta.Compact[schema.BronzeRow](ctx, t, o)
		case schema.Silver:
			k, err = delta.Compact[schema.SilverRow](ctx, t, o)
		case schema.SilverLate:
			k, err = delta.Compact[schema.SilverLateRow](ctx, t, o)
		case schema.Gold:
			k, err = delta.Compact[schema.GoldRow](ctx, t, o)
		}
		if err != nil {
			c.log.Warn("compacting", slog.String("table", name), slog.Any("err", err))
			continue
		}
		n += k
	}
	c.m.count(func(s *Stats) { s.Compactions += int64(n) })
	c.compactions++
	now := c.opts.Clock.Now()
	if c.maintained.IsZero() {
		c.maintained = now // the first round an interval after the start
		c.vacuumed = now
		c.logCleaned = now
	}
	if now.Sub(c.maintained) < c.opts.MaintenanceInterval {
		return
	}
	c.maintained = now
	// Retention is the tables' own (their Delta properties).
	if c.opts.VacuumRetention > 0 && now.Sub(c.vacuumed) >= c.opts.VacuumInterval {
		c.vacuumed = now
		for _, name := range []string{schema.Bronze, schema.Silver, schema.SilverLate, schema.Gold} {
			k, err := c.tables[name].Vacuum(ctx, max(time.Hour, c.tables[name].Snapshot().Retention().DeletedFiles))
			if err != nil {
				c.log.Warn("vacuuming", slog.String("table", name), slog.Any("err", err))
			}
			c.m.count(func(s *Stats) { s.Vacuumed += int64(k) })
		}
	}
	if c.opts.LogRetention > 0 && now.Sub(c.logCleaned) >= c.opts.LogCleanupInterval {
		c.logCleaned = now
		for _, name := range []string{schema.Bronze, schema.Silver, schema.SilverLate, schema.Gold} {
			if _, err := c.tables[name].CleanupLog(ctx, max(time.Hour, c.tables[name].Snapshot().Retention().Log)); err != nil && !errors.Is(err, lake.ErrNotFound) {
				c.log.Warn("cleaning the Delta log", slog.String("table", name), slog.Any("err", err))
			}
		}
	}
	c.landingLifecycle(ctx, processed)
}
