package rollup

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// AppID is the Delta txn application id of the frontier (its version is
// the frontier in µs); AppID+"-source" records the source version read.
const AppID = "pilake-rollup"

// Tier is one rollup table.
type Tier struct {
	Table  string        // e.g. "silver_1m"
	Source string        // the table it is built from
	Width  time.Duration // bucket width; a multiple of the source's
}

// DefaultTiers are silver_10s, silver_1m and silver_1h, each from the one below.
func DefaultTiers() []Tier {
	return []Tier{
		{Table: schema.Silver10s, Source: schema.Silver, Width: 10 * time.Second},
		{Table: schema.Silver1m, Source: schema.Silver10s, Width: time.Minute},
		{Table: schema.Silver1h, Source: schema.Silver1m, Width: time.Hour},
	}
}

// Options configure a Roller.
type Options struct {
	// Tiers to maintain, in dependency order; nil means DefaultTiers.
	Tiers []Tier
	// Grace is how long, in the source's event time, a bucket stays open
	// after it ends [30s]. Keep it above the stages' allowed lateness.
	Grace time.Duration
	// Interval is the time between two passes of Run [1s].
	Interval time.Duration
	// CompactEvery compacts a tier's small files every this many commits
	// [64], and at least hourly (a tier that commits once an hour would
	// otherwise wait days).
	CompactEvery int
	// VacuumInterval is the time between two vacuums of a tier table [6h]:
	// a vacuum lists every file of the table, so its cost grows with the
	// table's history.
	VacuumInterval time.Duration
	// LogCleanupInterval is the time between two log cleanups of a tier
	// table [6h]: a cleanup lists the table's whole log.
	LogCleanupInterval time.Duration
	// UpkeepLock, if set, is held during each tier's pass: the collector
	// passes the stages' stages.Options.UpkeepLock, so a pass and the
	// stages' compaction never hold their working sets at once.
	UpkeepLock sync.Locker
	// CheckpointInterval is passed to the tier tables (0: delta's default).
	CheckpointInterval int
	// Table, if set, are the tier tables' options (the collector passes
	// stages.Options.TableOptions: retention properties, checkpoints by
	// size and age, the checkpoint policy), with Now, Description and a
	// non-zero CheckpointInterval set by the Roller. Zero: Delta's
	// defaults and classic checkpoints.
	Table  delta.Options
	Logger *slog.Logger
	Now    func() time.Time
}

// Roller maintains the tiers of one lake. It is not safe for concurrent use;
// one Roller per lake.
type Roller struct {
	l     lake.Lake
	o     Options
	log   *slog.Logger
	tiers []*tierState
}

type span struct{ min, max int64 } // window_start stats of a file, µs

type tierState struct {
	Tier
	width      int64 // µs
	t          *delta.Table
	src        *delta.Snapshot
	spans      map[string]span // source file → its window_start span
	srcMax     int64           // newest source window_start seen
	srcWidth   int64           // width of source rows (from window_end - window_start)
	frontier   int64           // µs; -1: not started
	srcVersion int64           // source version read; -1: none
	commits    int
	maintain   time.Time // next log cleanup
	compact    time.Time // next compaction at the latest
	vacuum     time.Time // next vacuum
}

// New returns a Roller for l.
func New(l lake.Lake, o Options) *Roller {
	if o.Tiers == nil {
		o.Tiers = DefaultTiers()
	}
	if o.Grace <= 0 {
		o.Grace = 30 * time.Second
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.CompactEvery <= 0 {
		o.CompactEvery = 64
	}
	if o.VacuumInterval <= 0 {
		o.VacuumInterval = 6 * time.Hour
	}
	if o.LogCleanupInterval <= 0 {
		o.LogCleanupInterval = 6 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Roller{l: l, o: o, log: log}
	for _, t := range o.Tiers {
		r.tiers = append(r.tiers, &tierState{Tier: t, width: t.Width.Microseconds(), frontier: -1, srcVersion: -1, srcMax: -1})
	}
	return r
}

// Run makes a pass every Interval until ctx ends. A failed pass is logged
// and retried at the next interval.
func (r *Roller) Run(ctx context.Context) error {
	tick := time.NewTicker(r.o.Interval)
	defer tick.Stop()
	for {
		if _, err := r.Step(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.log.Warn("rollup pass failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Step makes one pass over the tiers, in order, and returns the rows written.
func (r *Roller) Step(ctx context.Context) (int, error) {
	total := 0
	for _, ts := range r.tiers {
		n, err := r.lockedStep(ctx, ts)
		total += n
		if err != nil {
			return total, fmt.Errorf("rolling up %s: %w", ts.Table, err)
		}
	}
	return total, nil
}

// Frontier returns tier's frontier (µs; every bucket ending at or before it
// is in the table), or false before its first commit in this process.
func (r *Roller) Frontier(table string) (int64, bool) {
	for _, ts := range r.tiers {
		if ts.Table == table && ts.frontier >= 0 {
			return ts.frontier, true
		}
	}
	return 0, false
}

// lockedStep is step under Options.UpkeepLock.
func (r *Roller) lockedStep(ctx context.Context, ts *tierState) (int, error) {
	if l := r.o.UpkeepLock; l != nil {
		l.Lock()
		defer l.Unlock()
	}
	return r.step(ctx, ts)
}

// Following returns how many of its source's files tier table follows in
// memory: those it may still read (not entirely before its frontier), not
// the source's history.
func (r *Roller) Following(table string) int {
	for _, ts := range r.tiers {
		if ts.Table == table && ts.src != nil {
			return ts.src.NumFiles()
		}
	}
	return 0
}

// Frontier reads a tier table's frontier from its snapshot (µs), as a
// reader of the lake sees it.
func Frontier(s *delta.Snapshot) (int64, bool) { return s.TxnVersion(AppID) }

func (r *Roller) open(ctx context.Context, ts *tierState) error {
	if ts.t != nil {
		return nil
	}
	o := r.o.Table
	o.Now = r.o.Now
	o.Description = fmt.Sprintf("pilake rollup of %s: per device, %v buckets (count, min, max, count-weighted mean)", ts.Source, ts.Width)
	if r.o.CheckpointInterval != 0 {
		o.CheckpointInterval = r.o.CheckpointInterval
	}
	t, err := delta.Open[schema.SilverRow](ctx, r.l, ts.Table, o)
	if err != nil {
		return err
	}
	ts.t = t
	if v, ok := t.Snapshot().TxnVersion(AppID); ok {
		ts.frontier = v
	}
	if v, ok := t.Snapshot().TxnVersion(AppID + "-source"); ok {
		ts.srcVersion = v
	}
	ts.spans = map[string]span{}
	return nil
}

func (r *Roller) step(ctx context.Context, ts *tierState) (n int, err error) {
	if err := r.open(ctx, ts); err != nil {
		return 0, err
	}
	// The source snapshot is the roller's own, updated in place; after a
	// failed pass it is read again from the lake (it may be ahead of what
	// the pass committed).
	defer func() {
		if err != nil {
			ts.src = nil
		}
	}()
	snap, fresh := ts.src, ts.src == nil
	var commits [][]delta.Action
	if fresh {
		snap, err = delta.Load(ctx, r.l, ts.Source)
		if errors.Is(err, delta.ErrNoTable) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
	} else if commits, err = snap.Update(ctx, r.l, ts.Source); err != nil {
		return 0, err
	}
	ts.src = snap
	if !fresh && len(commits) == 0 && ts.srcMax < ts.frontier+ts.width {
		return 0, nil // nothing new, no bucket to close
	}
	// Files added since the version last committed (dataChange: compaction's
	// rewrites carry rows already seen).
	var added []delta.AddFile
	if ts.srcVersion >= 0 && snap.Version > ts.srcVersion {
		added, err = r.addedSince(ctx, ts.Source, ts.srcVersion, snap.Version)
		if err != nil {
			return 0, err
		}
	}
	// Each live file's window_start span, from its statistics: every file
	// after a fresh load (Load read them), then those the new commits add
	// (their actions carry them). The work per pass is the new commits',
	// not the source's history.
	note := func(f delta.AddFile) {
		sp, ok := ts.spans[f.Path]
		if !ok {
			sp = fileSpan(f)
			ts.spans[f.Path] = sp
		}
		ts.srcMax = max(ts.srcMax, sp.max)
	}
	if fresh {
		clear(ts.spans)
		for f := range snap.All() {
			note(f)
		}
		// From now on the snapshot follows only the live files: no
		// statistics (each file's span is kept here), no tombstones, or
		// its memory would grow with the source's history.
		snap.ForgetStats()
	}
	for _, c := range commits {
		for _, a := range c {
			switch {
			case a.Add != nil:
				note(*a.Add)
			case a.Remove != nil:
				delete(ts.spans, a.Remove.Path)
			}
		}
	}
	if len(ts.spans) > snap.NumFiles() {
		// A remove spelled differently from its add: prune by the snapshot.
		live := map[string]bool{}
		for f := range snap.All() {
			live[f.Path] = true
		}
		maps.DeleteFunc(ts.spans, func(p string, _ span) bool { return !live[p] })
	}
	if snap.NumFiles() == 0 {
		return 0, nil // an empty source
	}
	if ts.srcWidth == 0 {
		ts.srcWidth = r.sourceWidth(ts)
	}
	from := ts.frontier
	if from < 0 {
		minWS := int64(math.MaxInt64)
		for _, sp := range ts.spans {
			minWS = min(minWS, sp.min)
		}
		from = floorDiv(minWS, ts.width) * ts.width
	}
	to := floorDiv(ts.srcMax+ts.srcWidth-r.o.Grace.Microseconds(), ts.width) * ts.width
	to = max(to, from)

	// Corrections: rows of newly added files in buckets already written.
	var late []schema.SilverRow
	for _, f := range added {
		if sp := fileSpan(f); sp.min >= from {
			continue
		}
		rows, err := delta.ReadFiles[schema.SilverRow](ctx, r.l, ts.Source, []delta.AddFile{f}, nil)
		if err != nil {
			if errors.Is(err, lake.ErrNotFound) {
				continue // compacted away since: its rows are in a file we read below or already rolled
			}
			return 0, err
		}
		for _, x := range rows {
			if x.WindowStart < from {
				late = append(late, x)
			}
		}
	}
	// Closed buckets: source rows in [from, to).
	var rows []schema.SilverRow
	if to > from {
		var files []delta.AddFile
		for f := range snap.All() {
			if sp := ts.spans[f.Path]; sp.max >= from && sp.min < to {
				files = append(files, f)
			}
		}
		slices.SortFunc(files, func(a, b delta.AddFile) int { return strings.Compare(a.Path, b.Path) })
		for _, f := range files {
			got, err := readRange(ctx, r.l, ts.Source, f, from, to)
			if err != nil {
				return 0, err
			}
			rows = append(rows, got...)
		}
	}
	// Rows of the buckets closed now and corrections of buckets written
	// before go into separate files: the first belong to their day's
	// compaction; the second to a day that may be compacted already, where
	// they stay a small file of their own. Together, the day's fresh rows
	// would be stranded with them.
	newRows, corrections := Aggregate(rows, ts.width), Aggregate(late, ts.width)
	if len(newRows)+len(corrections) == 0 && to == from {
		// Nothing to write; the source version is recorded with the next rows.
		ts.src = snap
		return 0, nil
	}
	var actions []delta.Action
	for _, out := range [][]schema.SilverRow{newRows, corrections} {
		if len(out) == 0 {
			continue
		}
		// Time-major in the file, so a reader prunes pages (Parquet page
		// index) by window_start: the newest minutes of a file are a page
		// or two.
		slices.SortStableFunc(out, func(a, b schema.SilverRow) int {
			return cmp.Or(cmp.Compare(a.WindowStart, b.WindowStart), cmp.Compare(a.Device, b.Device))
		})
		add, err := delta.WriteFile(ctx, ts.t, out, nil)
		if err != nil {
			return 0, err
		}
		actions = append(actions, delta.Action{Add: &add})
	}
	now := r.o.Now().UnixMilli()
	actions = append(actions,
		delta.Action{Txn: &delta.Txn{AppID: AppID, Version: to, LastUpdated: now}},
		delta.Action{Txn: &delta.Txn{AppID: AppID + "-source", Version: snap.Version, LastUpdated: now}})
	if _, err := ts.t.CommitID(ctx, actions, "STREAMING UPDATE", fmt.Sprintf("%s-%d-%d", AppID, to, snap.Version)); err != nil {
		return 0, err
	}
	ts.frontier, ts.srcVersion, ts.src = to, snap.Version, snap
	ts.commits++
	// Files entirely before the frontier are never read again (rows that
	// arrive late come in new files, read above from the new commits), so
	// the roller keeps the files it will read, not the source's history.
	ts.src.ForgetFiles(func(f delta.AddFile) bool {
		sp, ok := ts.spans[f.Path]
		return ok && sp.max < ts.frontier
	})
	maps.DeleteFunc(ts.spans, func(_ string, sp span) bool { return sp.max < ts.frontier })
	if wall := r.o.Now(); ts.commits%r.o.CompactEvery == 0 || !wall.Before(ts.compact) {
		ts.compact = wall.Add(time.Hour)
		// A bucket is written once its end is Grace behind the source's
		// newest rows: the day's last bucket comes a width and a grace
		// after midnight. Compaction waits that long before it closes a
		// day, so the day's last bucket is in the day's file, not a file
		// of its own (a footer a day more in a small tier: silver_1h's
		// day is ≈ 7 KB).
		o := delta.CompactOptions{Grace: ts.Width + r.o.Grace + 10*time.Minute}
		if _, err := delta.Compact[schema.SilverRow](ctx, ts.t, o); err != nil {
			r.log.Warn("compacting rollup tier", "table", ts.Table, "err", err)
		}
	}
	// As the stages do for their tables: files compaction replaced (every
	// VacuumInterval) and log entries past the table's retention (every
	// LogCleanupInterval) go, so a tier costs the same on day 30 as on day 1.
	wall := r.o.Now()
	ret := ts.t.Snapshot().Retention()
	if !wall.Before(ts.vacuum) {
		ts.vacuum = wall.Add(r.o.VacuumInterval)
		if _, err := ts.t.Vacuum(ctx, max(time.Hour, ret.DeletedFiles)); err != nil && !errors.Is(err, lake.ErrNotFound) {
			r.log.Warn("vacuuming rollup tier", "table", ts.Table, "err", err)
		}
	}
	if !wall.Before(ts.maintain) {
		ts.maintain = wall.Add(r.o.LogCleanupInterval)
		if _, err := ts.t.CleanupLog(ctx, max(time.Hour, ret.Log)); err != nil && !errors.Is(err, lake.ErrNotFound) {
			r.log.Warn("cleaning up rollup tier's log", "table", ts.Table, "err", err)
		}
	}
	return len(newRows) + len(corrections), nil
}

// sourceWidth returns the window width of the source's rows, from one row.
func (r *Roller) sourceWidth(ts *tierState) int64 {
	for _, t := range r.tiers {
		if t.Table == ts.Source {
			return t.width
		}
	}
	return time.Second.Microseconds() // silver's default window; only shifts when a bucket closes
}

// addedSince returns the data-changing files added to table in versions (from, to].
func (r *Roller) addedSince(ctx context.Context, table string, from, to int64) ([]delta.AddFile, error) {
	var out []delta.AddFile
	for v := from + 1; v <= to; v++ {
		data, err := r.l.Get(ctx, delta.CommitName(table, v))
		if errors.Is(err, lake.ErrNotFound) {
			r.log.Warn("rollup: source commit gone (log cleaned up); late rows in it are not corrected", "table", table, "version", v)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading commit %d of %s: %w", v, table, err)
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			var a delta.Action
			if err := json.Unmarshal(line, &a); err != nil {
				return nil, fmt.Errorf("reading commit %d of %s: %w", v, table, err)
			}
			if a.Add != nil && a.Add.DataChange {
				out = append(out, *a.Add)
			}
		}
	}
	return out, nil
}

// fileSpan returns f's window_start span from its statistics (all time
// when it has none: such a file is read whenever it could matter).
func fileSpan(f delta.AddFile) span {
	sp := span{min: 0, max: 1<<62 - 1}
	st, err := f.ParsedStats()
	if err != nil {
		return sp
	}
	if v, ok := st.MinValues["window_start"]; ok {
		if t, err := delta.ParseStatsTime(v); err == nil {
			sp.min = t
		}
	}
	if v, ok := st.MaxValues["window_start"]; ok {
		if t, err := delta.ParseStatsTime(v); err == nil {
			sp.max = t + 999 // stats are truncated to milliseconds
		}
	}
	return sp
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Aggregate rolls rows up into buckets of width µs: one row per device and
// bucket, sorted by device and time, with the summed counts, the least
// minimum, the greatest maximum and the count-weighted mean of each
// quantity. Rows are folded in (device, window_start) order, so the result
// does not depend on the input's order.
func Aggregate(rows []schema.SilverRow, width int64) []schema.SilverRow {
	if len(rows) == 0 {
		return nil
	}
	rows = slices.Clone(rows)
	slices.SortFunc(rows, func(a, b schema.SilverRow) int {
		return cmp.Or(cmp.Compare(a.Device, b.Device), cmp.Compare(a.WindowStart, b.WindowStart))
	})
	var out []schema.SilverRow
	var acc accum
	for i := range rows {
		x := &rows[i]
		b := floorDiv(x.WindowStart, width) * width
		if acc.n > 0 && (acc.row.Device != x.Device || acc.row.WindowStart != b) {
			out = append(out, acc.done())
			acc = accum{}
		}
		if acc.n == 0 {
			acc.row = schema.SilverRow{Device: x.Device, WindowStart: b, WindowEnd: b + width}
		}
		acc.add(x)
	}
	return append(out, acc.done())
}

type accum struct {
	row    schema.SilverRow
	n      int
	st, ut float64  // Σ avg·count, Σ avg (for count 0 rows)
	h, p   optAccum // humidity and pressure: over the rows that have them
}

// optAccum accumulates a nullable quantity (humidity, pressure) over the
// rows that have it; a bucket none of whose rows has it has none. The mean
// is weighted by the rows' counts: exact when each window's readings all
// have the value or none has (one sensor per device), as silver does not
// say how many of a window's readings had it.
type optAccum struct {
	n      int
	count  int64
	s, u   float64 // Σ avg·count, Σ avg
	lo, hi float64
}

func (o *optAccum) add(avg, lo, hi *float64, count int64) {
	if avg == nil {
		return
	}
	l, h := *avg, *avg
	if lo != nil {
		l = *lo
	}
	if hi != nil {
		h = *hi
	}
	if o.n == 0 {
		o.lo, o.hi = l, h
	}
	o.n++
	o.count += count
	o.s += *avg * float64(count)
	o.u += *avg
	o.lo, o.hi = min(o.lo, l), max(o.hi, h)
}

func (o *optAccum) done() (avg, lo, hi *float64) {
	if o.n == 0 {
		return nil, nil, nil
	}
	v := new([3]float64)
	if o.count > 0 {
		v[0] = o.s / float64(o.count)
	} else {
		v[0] = o.u / float64(o.n)
	}
	v[1], v[2] = o.lo, o.hi
	return &v[0], &v[1], &v[2]
}

func (a *accum) add(x *schema.SilverRow) {
	r := &a.row
	if a.n == 0 {
		r.TempMin, r.TempMax = x.TempMin, x.TempMax
	}
	a.n++
	r.Count += x.Count
	r.FreshCount += x.FreshCount
	c := float64(x.Count)
	a.st += x.TempAvg * c
	a.ut += x.TempAvg
	a.h.add(x.HumidityAvg, x.HumidityMin, x.HumidityMax, x.Count)
	a.p.add(x.PressureAvg, x.PressureMin, x.PressureMax, x.Count)
	r.TempMin, r.TempMax = min(r.TempMin, x.TempMin), max(r.TempMax, x.TempMax)
}

func (a *accum) done() schema.SilverRow {
	r := a.row
	if r.Count > 0 {
		r.TempAvg = a.st / float64(r.Count)
	} else {
		r.TempAvg = a.ut / float64(a.n)
	}
	r.HumidityAvg, r.HumidityMin, r.HumidityMax = a.h.done()
	r.PressureAvg, r.PressureMin, r.PressureMax = a.p.done()
	return r
}
