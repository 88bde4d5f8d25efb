package stages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/schema"
)

// errSettings: the lake's stage state was built with other window settings.
var errSettings = errors.New("stage settings differ from the lake's")

// recover opens the tables, loads the state of the last committed epoch and
// completes that epoch's commits to the derived tables. It returns the
// runner and the committer that go on from that state; it runs before
// either starts.
func (p *Pipeline) recover(ctx context.Context) (*runner, *committer, error) {
	base := p.opts.TableOptions()
	dopts := func(parts ...string) delta.Options {
		o := base
		o.PartitionColumns = parts
		o.Logger = p.log
		o.ChecksumFailed = func(error) { p.m.count(func(s *Stats) { s.ChecksumErrors++ }) }
		return o
	}
	r, c := newRunner(p), newCommitter(p)
	var err error
	if c.tables[schema.Bronze], err = delta.Open[schema.BronzeRow](ctx, p.l, schema.Bronze, dopts()); err != nil {
		return nil, nil, fmt.Errorf("recovering stages: %w", err)
	}
	if c.tables[schema.Silver], err = delta.Open[schema.SilverRow](ctx, p.l, schema.Silver, dopts()); err != nil {
		return nil, nil, fmt.Errorf("recovering stages: %w", err)
	}
	if c.tables[schema.SilverLate], err = delta.Open[schema.SilverLateRow](ctx, p.l, schema.SilverLate, dopts()); err != nil {
		return nil, nil, fmt.Errorf("recovering stages: %w", err)
	}
	// Gold is one table clustered by time (a file per commit, rows in
	// window_start, device order), committed with every epoch. Lakes whose
	// gold was made partitioned by device keep that layout, with its
	// once-a-minute commits (a file per device each).
	var goldParts []string
	if snap, err := delta.Load(ctx, p.l, schema.Gold); err == nil && slices.Equal(snap.Metadata.PartitionColumns, []string{"device"}) {
		goldParts = []string{"device"}
	} else if err != nil && !errors.Is(err, delta.ErrNoTable) {
		return nil, nil, fmt.Errorf("recovering stages: %w", err)
	}
	if c.tables[schema.Gold], err = delta.Open[schema.GoldRow](ctx, p.l, schema.Gold, dopts(goldParts...)); err != nil {
		return nil, nil, fmt.Errorf("recovering stages: %w", err)
	}
	c.setGoldLayout(len(goldParts) > 0)
	e, ok := c.tables[schema.Bronze].Snapshot().TxnVersion(AppID)
	if !ok {
		p.log.Info("stages starting with empty state")
		return r, c, nil
	}
	data, err := p.l.Get(ctx, checkpointName(e))
	if err != nil {
		return nil, nil, fmt.Errorf("recovering stages: loading state of epoch %d: %w", e, err)
	}
	var cp checkpoint
	if err := json.Unmarshal(data, &cp); err != nil {
		return nil, nil, fmt.Errorf("recovering stages: parsing state of epoch %d: %w", e, err)
	}
	if cp.Epoch != e {
		return nil, nil, fmt.Errorf("recovering stages: state object of epoch %d says epoch %d", e, cp.Epoch)
	}
	if cp.WindowUS != r.f.width || cp.LatenessUS != r.f.lateness || !slices.Equal(cp.MovingAverages, p.opts.MovingAverages) {
		return nil, nil, fmt.Errorf("recovering stages: %w: the lake's state was built with window %v, allowed lateness %v, moving averages %v; "+
			"this run has %v, %v, %v: restart with the lake's settings or a new lake", errSettings,
			time.Duration(cp.WindowUS)*time.Microsecond, time.Duration(cp.LatenessUS)*time.Microsecond, cp.MovingAverages,
			p.opts.Window, p.opts.AllowedLateness, p.opts.MovingAverages)
	}
	if r.landed, r.segments, err = decodeLandedState(cp.Landed, cp.Segments); err != nil {
		return nil, nil, fmt.Errorf("recovering stages: state of epoch %d: %w", e, err)
	}
	if cp.DevicesObject != devicesName(e) {
		return nil, nil, fmt.Errorf("recovering stages: state of epoch %d names devices object %q", e, cp.DevicesObject)
	}
	data, err = p.l.Get(ctx, cp.DevicesObject)
	if err != nil {
		return nil, nil, fmt.Errorf("recovering stages: loading state of epoch %d: %w", e, err)
	}
	if r.f.devices, err = decodeDevices(data); err != nil {
		return nil, nil, fmt.Errorf("recovering stages: state of epoch %d: %w", e, err)
	}
	r.epochN = e
	c.landing = landingPositions{From: timeOrZero(cp.LandingFrom), Kept: timeOrZero(cp.LandingKept)}
	r.landing = c.landing
	for _, name := range cp.GoldStaged {
		rows, err := readStaged(ctx, p.l, name)
		if err != nil {
			return nil, nil, fmt.Errorf("recovering stages: %w", err)
		}
		c.goldRows = append(c.goldRows, rows...)
	}
	c.goldStaged = cp.GoldStaged
	// Bronze's commit is the epoch's atomic point: resume its commit steps
	// after it (each skips a table that has the epoch's txn).
	ep := &epoch{n: e, adds: cp.Pending, recovered: true, step: stepCommitDerived}
	if ep.adds == nil {
		ep.adds = map[string][]delta.AddFile{}
	}
	for _, name := range derived {
		if v, ok := c.tables[name].Snapshot().TxnVersion(AppID); !ok || v < e {
			p.log.Info("completing interrupted epoch", slog.Int64("epoch", e), slog.String("table", name), slog.Int("files", len(cp.Pending[name])))
		}
	}
	if err := c.runSteps(ctx, ep, stepAfterCommits); err != nil {
		return nil, nil, fmt.Errorf("recovering stages: completing epoch %d: %w", e, err)
	}
	p.log.Info("stages recovered", slog.Int64("epoch", e), slog.Int("devices", len(r.f.devices)), slog.Int("streams", len(r.landed)), slog.Int("segment_writers", len(r.segments)))
	return r, c, nil
}
