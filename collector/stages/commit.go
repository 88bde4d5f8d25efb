package stages

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
)

// errSettings: the lake's stage state was built with other window settings.
var errSettings = errors.New("stage settings differ from the lake's")

// The tables after bronze, in commit order.
var derived = []string{schema.Silver, schema.SilverLate, schema.Gold}

// recover opens the tables, loads the state of the last committed epoch and
// completes that epoch's commits to the derived tables.
func (p *Pipeline) recover(ctx context.Context) error {
	dopts := func(parts ...string) delta.Options {
		return delta.Options{PartitionColumns: parts, CheckpointInterval: p.opts.CheckpointInterval, Now: p.opts.Now}
	}
	p.tables = map[string]*delta.Table{}
	var err error
	if p.tables[schema.Bronze], err = delta.Open[schema.BronzeRow](ctx, p.l, schema.Bronze, dopts()); err != nil {
		return fmt.Errorf("recovering stages: %w", err)
	}
	if p.tables[schema.Silver], err = delta.Open[schema.SilverRow](ctx, p.l, schema.Silver, dopts()); err != nil {
		return fmt.Errorf("recovering stages: %w", err)
	}
	if p.tables[schema.SilverLate], err = delta.Open[schema.SilverLateRow](ctx, p.l, schema.SilverLate, dopts()); err != nil {
		return fmt.Errorf("recovering stages: %w", err)
	}
	if p.tables[schema.Gold], err = delta.Open[schema.GoldRow](ctx, p.l, schema.Gold, dopts("device")); err != nil {
		return fmt.Errorf("recovering stages: %w", err)
	}
	p.f = newFolder(p.opts.Window.Microseconds(), p.opts.AllowedLateness.Microseconds(), p.opts.MovingAverages)
	p.landed = map[string]landing.SeqRanges{}
	p.segments, p.segSeen = map[string]landing.SeqRanges{}, map[string]*segProgress{}
	p.bw = delta.NewBronzeWriter(p.opts.CompatibleBronze)
	p.goldDue = p.opts.Now().Add(p.opts.GoldInterval)
	e, ok := p.tables[schema.Bronze].Snapshot().TxnVersion(AppID)
	if !ok {
		p.log.Info("stages starting with empty state")
		return nil
	}
	data, err := p.l.Get(ctx, checkpointName(e))
	if err != nil {
		return fmt.Errorf("recovering stages: loading state of epoch %d: %w", e, err)
	}
	var cp checkpoint
	if err := json.Unmarshal(data, &cp); err != nil {
		return fmt.Errorf("recovering stages: parsing state of epoch %d: %w", e, err)
	}
	if cp.Epoch != e {
		return fmt.Errorf("recovering stages: state object of epoch %d says epoch %d", e, cp.Epoch)
	}
	if cp.WindowUS != p.f.width || cp.LatenessUS != p.f.lateness || !slices.Equal(cp.MovingAverages, p.opts.MovingAverages) {
		return fmt.Errorf("recovering stages: %w: the lake's state was built with window %v, allowed lateness %v, moving averages %v; "+
			"this run has %v, %v, %v: restart with the lake's settings or a new lake", errSettings,
			time.Duration(cp.WindowUS)*time.Microsecond, time.Duration(cp.LatenessUS)*time.Microsecond, cp.MovingAverages,
			p.opts.Window, p.opts.AllowedLateness, p.opts.MovingAverages)
	}
	if p.landed, p.segments, err = decodeLandedState(cp.Landed, cp.Segments); err != nil {
		return fmt.Errorf("recovering stages: state of epoch %d: %w", e, err)
	}
	if cp.DevicesObject != devicesName(e) {
		return fmt.Errorf("recovering stages: state of epoch %d names devices object %q", e, cp.DevicesObject)
	}
	data, err = p.l.Get(ctx, cp.DevicesObject)
	if err != nil {
		return fmt.Errorf("recovering stages: loading state of epoch %d: %w", e, err)
	}
	if p.f.devices, err = decodeDevices(data); err != nil {
		return fmt.Errorf("recovering stages: state of epoch %d: %w", e, err)
	}
	p.epochN = e
	for _, name := range cp.GoldStaged {
		rows, err := readStaged(ctx, p.l, name)
		if err != nil {
			return fmt.Errorf("recovering stages: %w", err)
		}
		p.goldRows = append(p.goldRows, rows...)
	}
	p.goldStaged = cp.GoldStaged
	for _, name := range derived {
		t := p.tables[name]
		if v, ok := t.Snapshot().TxnVersion(AppID); ok && v >= e {
			continue
		}
		if err := p.commitTable(ctx, t, e, cp.Pending[name]); err != nil {
			return fmt.Errorf("recovering stages: completing epoch %d: %w", e, err)
		}
		p.log.Info("completed interrupted epoch", slog.Int64("epoch", e), slog.String("table", name), slog.Int("files", len(cp.Pending[name])))
	}
	p.log.Info("stages recovered", slog.Int64("epoch", e), slog.Int("devices", len(p.f.devices)), slog.Int("streams", len(p.landed)), slog.Int("segment_writers", len(p.segments)))
	return nil
}

// commitTable commits adds to t with the epoch's txn. Its commit id is the
// same on every retry within this process, so a commit whose write landed
// although the lake reported an error is recognised, not repeated; another
// writer's commit of the same application fails with delta.ErrConflict.
func (p *Pipeline) commitTable(ctx context.Context, t *delta.Table, e int64, adds []delta.AddFile) error {
	actions := make([]delta.Action, 0, len(adds)+1)
	for i := range adds {
		actions = append(actions, delta.Action{Add: &adds[i]})
	}
	actions = append(actions, delta.Action{Txn: &delta.Txn{AppID: AppID, Version: e, LastUpdated: p.opts.Now().UnixMilli()}})
	_, err := t.CommitID(ctx, actions, "STREAMING UPDATE", fmt.Sprintf("%s-%s-%d", p.instance, t.Name(), e))
	return err
}

// committer commits epochs in order, retrying each until it succeeds or ctx ends.
func (p *Pipeline) committer(ctx context.Context) {
	backoff := p.opts.RetryBackoff
	for e := range p.commits {
		for {
			err := p.commitEpoch(ctx, e)
			if err == nil {
				backoff = p.opts.RetryBackoff
				break
			}
			p.count(func(s *Stats) { s.CommitRetries++ })
			if errors.Is(err, delta.ErrConflict) || errors.Is(err, delta.ErrUnsupported) || ctx.Err() != nil {
				p.commitErr <- fmt.Errorf("committing epoch %d: %w", e.n, err)
				for range p.commits {
				}
				return
			}
			p.log.Warn("committing epoch failed; retrying", slog.Int64("epoch", e.n), slog.Any("error", err), slog.Duration("backoff", backoff))
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 10*time.Second)
		}
	}
}

func (p *Pipeline) commitEpoch(ctx context.Context, e *epoch) error {
	e.attempts++
	if !e.quarOK {
		for _, q := range e.quar {
			if err := p.writeQuarantine(ctx, q); err != nil {
				return err
			}
		}
		e.quarOK = true
	}
	// Each step below records its result in e, so that a retry after a
	// failure resumes where it failed and never redoes a step whose result
	// is already recorded (or, for gold, consumed).
	if !e.filesOK {
		if e.adds == nil {
			e.adds = map[string][]delta.AddFile{}
		}
		if _, done := e.adds[schema.Bronze]; !done && e.rows > 0 {
			if e.bronzeData == nil {
				data, err := e.bronze.Close()
				if err != nil {
					return err
				}
				e.bronzeData = data
			}
			add, err := p.tables[schema.Bronze].PutFile(ctx, e.bronzeData, e.bronze.Stats(), nil)
			if err != nil {
				return err
			}
			e.adds[schema.Bronze] = []delta.AddFile{add}
		}
		if _, done := e.adds[schema.Silver]; !done && len(e.silver) > 0 {
			add, err := delta.WriteFile(ctx, p.tables[schema.Silver], e.silver, nil)
			if err != nil {
				return err
			}
			e.adds[schema.Silver] = []delta.AddFile{add}
		}
		if _, done := e.adds[schema.SilverLate]; !done && len(e.late) > 0 {
			add, err := delta.WriteFile(ctx, p.tables[schema.SilverLate], e.late, nil)
			if err != nil {
				return err
			}
			e.adds[schema.SilverLate] = []delta.AddFile{add}
		}
		if len(e.gold) > 0 {
			name := goldStageName(e.n)
			data, _, err := delta.EncodeParquet(e.gold, nil, nil)
			if err != nil {
				return err
			}
			if err := p.l.Put(ctx, name, data); err != nil {
				return fmt.Errorf("staging gold: %w", err)
			}
			p.goldStaged = append(p.goldStaged, name)
			p.goldRows = append(p.goldRows, e.gold...)
			e.gold = nil
		}
		if !e.goldDone {
			if e.final || len(p.goldRows) >= p.opts.GoldMaxRows || !p.opts.Now().Before(p.goldDue) {
				adds, err := p.writeGold(ctx)
				if err != nil {
					return err
				}
				e.adds[schema.Gold] = adds
				e.goldFlushed = p.goldStaged
				p.goldStaged, p.goldRows = nil, nil
				p.goldDue = p.opts.Now().Add(p.opts.GoldInterval)
			}
			e.goldDone = true
		}
		// The state checkpoint names these files: make them durable first.
		for _, name := range []string{schema.Bronze, schema.Silver, schema.SilverLate, schema.Gold} {
			if err := p.tables[name].SyncFiles(ctx); err != nil {
				return err
			}
		}
		e.filesOK = true
	}
	if !e.cpOK {
		cp := checkpoint{Epoch: e.n, WindowUS: p.f.width, LatenessUS: p.f.lateness, MovingAverages: p.opts.MovingAverages,
			Landed: e.landed, Segments: e.segments, DevicesObject: devicesName(e.n), Pending: map[string][]delta.AddFile{}, GoldStaged: p.goldStaged}
		if err := p.l.Put(ctx, devicesName(e.n), e.devices); err != nil {
			return fmt.Errorf("writing state of epoch %d: %w", e.n, err)
		}
		for _, name := range derived {
			cp.Pending[name] = e.adds[name]
		}
		data, err := json.Marshal(cp)
		if err != nil {
			return fmt.Errorf("encoding state of epoch %d: %w", e.n, err)
		}
		if err := p.l.Put(ctx, checkpointName(e.n), data); err != nil {
			return fmt.Errorf("writing state of epoch %d: %w", e.n, err)
		}
		e.cpOK = true
	}
	for _, name := range append([]string{schema.Bronze}, derived...) {
		if e.tableOK[name] {
			continue
		}
		if name != schema.Bronze && len(e.adds[name]) == 0 {
			e.tableOK[name] = true
			continue
		}
		if err := p.commitTable(ctx, p.tables[name], e.n, e.adds[name]); err != nil {
			return err
		}
		e.tableOK[name] = true
	}
	// Staged gold that this epoch committed is no longer needed.
	for _, name := range e.goldFlushed {
		if err := p.l.Delete(ctx, name); err != nil {
			p.log.Warn("deleting staged gold", slog.Any("error", err))
		}
	}
	e.goldFlushed = nil
	// The state of epoch n-2 is no longer needed for recovery.
	if e.n > 2 {
		for _, name := range []string{checkpointName(e.n - 2), devicesName(e.n - 2)} {
			if err := p.l.Delete(ctx, name); err != nil {
				p.log.Warn("deleting old stage state", slog.Any("error", err))
			}
		}
	}
	var silverN, goldN int64 = int64(len(e.silver)), e.goldN
	p.count(func(s *Stats) {
		s.Epochs++
		s.SilverRows += silverN
		s.GoldRows += goldN
		s.LastCommit = p.opts.Now()
	})
	if p.opts.CompactEvery > 0 && e.n%int64(p.opts.CompactEvery) == 0 {
		p.compact(ctx)
	}
	return nil
}

func (p *Pipeline) compact(ctx context.Context) {
	o := delta.CompactOptions{}
	var n int
	var err error
	for _, name := range []string{schema.Bronze, schema.Silver, schema.SilverLate, schema.Gold} {
		var k int
		t := p.tables[name]
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
			p.log.Warn("compacting", slog.String("table", name), slog.Any("error", err))
			continue
		}
		n += k
	}
	p.count(func(s *Stats) { s.Compactions += int64(n) })
	p.compactions++
	if p.opts.VacuumRetention > 0 && p.compactions%10 == 0 {
		for _, name := range []string{schema.Bronze, schema.Silver, schema.SilverLate, schema.Gold} {
			k, err := p.tables[name].Vacuum(ctx, p.opts.VacuumRetention)
			if err != nil {
				p.log.Warn("vacuuming", slog.String("table", name), slog.Any("error", err))
			}
			p.count(func(s *Stats) { s.Vacuumed += int64(k) })
		}
	}
	if p.opts.LogRetention > 0 && p.compactions%10 == 0 {
		for _, name := range []string{schema.Bronze, schema.Silver, schema.SilverLate, schema.Gold} {
			if _, err := p.tables[name].CleanupLog(ctx, p.opts.LogRetention); err != nil && !errors.Is(err, lake.ErrNotFound) {
				p.log.Warn("cleaning the Delta log", slog.String("table", name), slog.Any("error", err))
			}
		}
	}
}

// scanLanding lands into bronze every batch in landing/ not yet in it, in
// name order: the batches of segments not yet processed whole, and legacy
// per-batch objects.
func (p *Pipeline) scanLanding(ctx context.Context) error {
	objs, err := p.l.List(ctx, schema.Landing)
	if err != nil {
		return fmt.Errorf("scanning landing: %w", err)
	}
	n := 0
	for _, o := range objs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(o.Name, landing.SegmentDir) {
			k, err := p.scanSegment(ctx, o)
			if err != nil {
				return err
			}
			n += k
			continue
		}
		stream, seq, err := landingKey(o.Name)
		if err != nil {
			p.log.Warn("ignoring object in landing/", slog.String("name", o.Name), slog.Any("error", err))
			continue
		}
		if p.landed[stream].Has(seq) {
			continue
		}
		data, err := p.l.Get(ctx, o.Name)
		if err != nil {
			return fmt.Errorf("scanning landing: %w", err)
		}
		b := &wire.Batch{}
		reason := ""
		if err := wire.Decode(data, b); err != nil {
			reason = fmt.Sprintf("decoding landing object: %v", err)
		} else if got := batchStream(b); got != stream || b.Seq != seq {
			reason = fmt.Sprintf("landing object %s holds batch %s", o.Name, b.Key())
		}
		if reason != "" {
			p.landed[stream] = p.landed[stream].Add(seq)
			p.dirty = true
			p.quar = append(p.quar, quarantined{name: o.Name, raw: data, recv: o.ModTime, source: "landing", reason: reason})
			p.count(func(s *Stats) { s.QuarantinedFiles++ })
			continue
		}
		p.process(Landed{Name: o.Name, Batch: b, ReceivedAt: o.ModTime, Source: "recovered"})
		n++
		if p.rows >= int64(p.opts.MaxEpochRows) {
			if err := p.cutEpoch(); err != nil {
				return err
			}
		}
	}
	if n > 0 {
		p.log.Info("landed objects found in landing/ into bronze", slog.Int("batches", n))
	}
	return nil
}

// scanRecent processes the segments other Landers wrote in the previous,
// current and next hour (by this clock; the next for a writer whose clock
// is ahead) that are not yet in bronze: ingest-only collectors sharing the
// MQTT load. Older ones are found by the scan at the next start.
func (p *Pipeline) scanRecent(ctx context.Context) error {
	now := p.opts.Now()
	n := 0
	for _, t := range []time.Time{now.Add(-time.Hour), now, now.Add(time.Hour)} {
		objs, err := p.l.List(ctx, landing.SegmentHourPrefix(t))
		if err != nil {
			return fmt.Errorf("scanning landing: %w", err)
		}
		for _, o := range objs {
			if inst, _, ok := landing.ParseSegmentName(o.Name); ok && inst == p.opts.LocalInstance {
				continue
			}
			k, err := p.scanSegment(ctx, o)
			if err != nil {
				return err
			}
			n += k
		}
	}
	if n > 0 {
		p.log.Debug("batches from other collectors' segments into bronze", slog.Int("batches", n))
	}
	return nil
}

// scanSegment processes the batches of segment o not yet in bronze, with
// their recorded receive time and source, and records the segment as
// processed. A record that cannot be read, and the rest of a segment after
// damage, are quarantined; the good records are kept.
func (p *Pipeline) scanSegment(ctx context.Context, o lake.Object) (int, error) {
	inst, counter, ok := landing.ParseSegmentName(o.Name)
	if !ok {
		p.log.Warn("ignoring object in landing/", slog.String("name", o.Name), slog.String("error", "not a segment name"))
		return 0, nil
	}
	if p.segments[inst].Has(counter) {
		return 0, nil
	}
	data, err := p.l.Get(ctx, o.Name)
	if err != nil {
		return 0, fmt.Errorf("scanning landing: %w", err)
	}
	recs, derr := landing.DecodeSegment(data)
	n := 0
	for i, r := range recs {
		b := &wire.Batch{}
		if err := wire.Decode(r.Payload, b); err != nil {
			p.quar = append(p.quar, quarantined{name: fmt.Sprintf("%s@record-%d", o.Name, i), raw: bytes.Clone(r.Payload), recv: r.ReceivedAt,
				source: "landing", reason: fmt.Sprintf("decoding record %d of segment %s: %v", i, o.Name, err)})
			p.count(func(s *Stats) { s.QuarantinedFiles++ })
			p.dirty = true
			continue
		}
		if p.landed[batchStream(b)].Has(b.Seq) {
			continue
		}
		src := r.Source
		if src == "" {
			src = "recovered"
		}
		p.process(Landed{Name: o.Name, Batch: b, ReceivedAt: r.ReceivedAt, Source: src})
		n++
		if p.rows >= int64(p.opts.MaxEpochRows) {
			if err := p.cutEpoch(); err != nil {
				return n, err
			}
		}
	}
	if derr != nil {
		var se *landing.SegmentError
		tail := 0
		if errors.As(derr, &se) {
			tail = se.Offset
		}
		p.quar = append(p.quar, quarantined{name: fmt.Sprintf("%s@offset-%d", o.Name, tail), raw: bytes.Clone(data[tail:]), recv: o.ModTime,
			source: "landing", reason: fmt.Sprintf("reading segment %s: %v (%d records before it kept)", o.Name, derr, len(recs))})
		p.count(func(s *Stats) { s.QuarantinedFiles++ })
		p.log.Warn("damaged segment in landing/: quarantined its unreadable part", slog.String("name", o.Name), slog.Any("error", derr))
	}
	p.segmentDone(o.Name, inst, counter)
	return n, nil
}

// writeQuarantine stores a rejected input and its reason under _quarantine/,
// named after its landing object so a redo overwrites rather than duplicates.
func (p *Pipeline) writeQuarantine(ctx context.Context, q quarantined) error {
	key := strings.TrimPrefix(q.name, schema.Landing)
	var name string
	var data []byte
	if q.raw != nil {
		name = schema.Quarantine + "landing/" + key
		data = q.raw
	} else {
		name = schema.Quarantine + "skew/" + q.batch.Key() + ".json"
		b := q.batch
		b.Readings = q.readings
		var err error
		data, err = wire.NewEncoder(wire.JSON).Append(nil, &b)
		if err != nil {
			return fmt.Errorf("encoding quarantined readings: %w", err)
		}
	}
	reason, _ := json.Marshal(map[string]any{
		"reason": q.reason, "source": q.source, "landing": q.name, "received_at": q.recv.UTC().Format(time.RFC3339Nano),
	})
	if err := p.l.Put(ctx, name, data); err != nil {
		return fmt.Errorf("quarantining: %w", err)
	}
	if err := p.l.Put(ctx, name+".reason.json", reason); err != nil {
		return fmt.Errorf("quarantining: %w", err)
	}
	return nil
}

// writeGold writes the staged gold rows as one file per device (the table is
// partitioned by device), several at a time, and returns their add actions
// in device order.
func (p *Pipeline) writeGold(ctx context.Context) ([]delta.AddFile, error) {
	byDev := map[string][]schema.GoldRow{}
	for _, g := range p.goldRows {
		byDev[g.Device] = append(byDev[g.Device], g)
	}
	devs := slices.Sorted(maps.Keys(byDev))
	adds := make([]delta.AddFile, len(devs))
	errs := make([]error, len(devs))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	t := p.tables[schema.Gold]
	for i, dev := range devs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			adds[i], errs[i] = delta.WriteFile(ctx, t, byDev[dev], map[string]string{"device": dev})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("writing gold: %w", err)
	}
	return adds, nil
}

func readStaged(ctx context.Context, l lake.Lake, name string) (_ []schema.GoldRow, err error) {
	data, err := l.Get(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("reading staged gold: %w", err)
	}
	defer func() { // parquet-go may panic on a corrupt file
		if r := recover(); r != nil {
			err = fmt.Errorf("reading staged gold %s: %w: %v", name, errState, r)
		}
	}()
	f, err := delta.OpenParquet(data)
	if err != nil {
		return nil, fmt.Errorf("reading staged gold %s: %w", name, err)
	}
	rows := make([]schema.GoldRow, 0, 1024)
	r := parquet.NewGenericReader[schema.GoldRow](f)
	defer r.Close()
	buf := make([]schema.GoldRow, 1024)
	for {
		n, err := r.Read(buf)
		rows = append(rows, buf[:n]...)
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading staged gold %s: %w: %v", name, errState, err)
		}
		if n == 0 {
			return nil, fmt.Errorf("reading staged gold %s: %w: no progress", name, errState)
		}
	}
}
