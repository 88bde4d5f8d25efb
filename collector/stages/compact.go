package stages

import (
	"context"
	"errors"
	"log/slog"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// compact runs the tables' maintenance after an epoch (on the committer's
// goroutine): compaction of small files, and every 10th round vacuum and
// Delta log cleanup. Failures are logged; the next round tries again.
func (c *committer) compact(ctx context.Context) {
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
			c.log.Warn("compacting", slog.String("table", name), slog.Any("error", err))
			continue
		}
		n += k
	}
	c.m.count(func(s *Stats) { s.Compactions += int64(n) })
	c.compactions++
	if c.opts.VacuumRetention > 0 && c.compactions%10 == 0 {
		for _, name := range []string{schema.Bronze, schema.Silver, schema.SilverLate, schema.Gold} {
			k, err := c.tables[name].Vacuum(ctx, c.opts.VacuumRetention)
			if err != nil {
				c.log.Warn("vacuuming", slog.String("table", name), slog.Any("error", err))
			}
			c.m.count(func(s *Stats) { s.Vacuumed += int64(k) })
		}
	}
	if c.opts.LogRetention > 0 && c.compactions%10 == 0 {
		for _, name := range []string{schema.Bronze, schema.Silver, schema.SilverLate, schema.Gold} {
			if _, err := c.tables[name].CleanupLog(ctx, c.opts.LogRetention); err != nil && !errors.Is(err, lake.ErrNotFound) {
				c.log.Warn("cleaning the Delta log", slog.String("table", name), slog.Any("error", err))
			}
		}
	}
}
