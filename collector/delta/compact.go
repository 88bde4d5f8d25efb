package delta

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
)

// CompactOptions configure Compact. Compaction streams the rows it rewrites
// (a chunk of rows at a time, one source file's bytes, and the new file's
// encoded bytes in memory); its work per call is bounded by rows, from the
// files' statistics.
type CompactOptions struct {
	// SmallFileRows: files with fewer rows are candidates; 0 means 1<<18.
	SmallFileRows int64
	// TargetRows bounds the rows of one rewritten file (and so the memory of
	// a compaction); 0 means 1<<20.
	TargetRows int64
	// MinFiles: a closed bucket's files are rewritten in groups of at least
	// this many; 0 means 2.
	MinFiles int
	// MaxRows bounds the rows one Compact call rewrites (the rest waits for
	// the next call), so a call's time is bounded too; 0 means 4×TargetRows.
	MaxRows int64
	// TimeColumn is the event-time column whose minimum (from the files'
	// statistics) puts a file in a time bucket; "" means the table's first
	// timestamp column, and files without that statistic are bucketed by
	// their modification time.
	TimeColumn string
	// Bucket is the width of the first tier's time buckets; 0 means 1 h.
	Bucket time.Duration
	// DayBucket is the width of the second tier's buckets; 0 means 24 h.
	DayBucket time.Duration
	// Grace: a bucket is compacted once its end is this far behind the
	// table's clock, so that its files are complete; 0 means 10 min.
	Grace time.Duration
	// Skipped, if set, is called for each file compaction leaves alone
	// because it cannot rewrite it exactly (a deletion vector):
	// ErrCannotCompact. Files whose columns would need conversion make
	// Compact fail with ErrCannotCompact instead.
	Skipped func(f AddFile, reason error)
}

// TagCompaction is the add action tag (add.tags) that marks a file Compact
// wrote and the tier it belongs to: TierHour or TierDay.
const TagCompaction = "pilake.compaction"

// Compaction tiers (values of TagCompaction).
const (
	TierHour = "hour"
	TierDay  = "day"
)

// Compact compacts by time. Every small file (under SmallFileRows rows) of
// a partition belongs to a time bucket, by the minimum of its event-time
// column. Once a bucket has closed (its end is Grace behind the clock):
//
//   - a day bucket (DayBucket) whose small files hold at most TargetRows
//     rows in all is rewritten into one file of TierDay;
//   - otherwise the files that Compact did not write yet are rewritten per
//     hour bucket (Bucket) into files of TierHour of up to TargetRows rows.
//
// A TierDay file is never rewritten again, a TierHour file at most once
// (into its day's file): each row is rewritten at most twice in its life,
// and the work per day is proportional to the data of that day, not to the
// table's history. Recent buckets are left alone. Buckets are taken oldest
// first over all partitions, at most MaxRows rows per call, so no partition
// starves. Each rewrite is one commit of add and remove actions with
// dataChange=false (what Delta's OPTIMIZE does); readers see the same rows
// before and after. Files without row counts are left alone. Compact
// returns how many files it removed.
func Compact[T any](ctx context.Context, t *Table, o CompactOptions) (int, error) {
	if o.SmallFileRows <= 0 {
		o.SmallFileRows = 1 << 18
	}
	if o.TargetRows <= 0 {
		o.TargetRows = 1 << 20
	}
	if o.MinFiles < 2 {
		o.MinFiles = 2
	}
	if o.MaxRows <= 0 {
		o.MaxRows = 4 * o.TargetRows
	}
	if o.Bucket <= 0 {
		o.Bucket = time.Hour
	}
	if o.DayBucket <= 0 {
		o.DayBucket = 24 * time.Hour
	}
	if o.Grace <= 0 {
		o.Grace = 10 * time.Minute
	}
	if o.TimeColumn == "" {
		for _, f := range t.schema.Fields {
			if f.Type == "timestamp" {
				o.TimeColumn = f.Name
				break
			}
		}
	}
	now := t.opts.Now()
	closed := now.Add(-o.Grace).UnixMicro() // buckets ending at or before this are closed
	hourUS, dayUS := o.Bucket.Microseconds(), o.DayBucket.Microseconds()
	type group struct {
		start int64 // bucket start, µs
		tier  string
		part  string
		files []small
		rows  int64
	}
	days := map[string]*group{}
	t.ftPass++
	defer func() {
		// Only what this call asked for stays cached: files gone since, or
		// no longer candidates (day files), leave the cache.
		maps.DeleteFunc(t.ftCache, func(_ string, c fileTimes) bool { return c.pass != t.ftPass })
	}()
	for _, f := range t.snap.files {
		if f.Tags[TagCompaction] == TierDay || f.shed {
			continue // never rewritten, or final and without statistics in memory (shed.go)
		}
		if f.DeletionVector != nil {
			// Rewriting it would have to apply the DV; compaction steps aside.
			if o.Skipped != nil {
				o.Skipped(f, ErrCannotCompact)
			}
			continue
		}
		rows, ts, ok := t.fileTime(f, o.TimeColumn)
		if !ok || rows >= o.SmallFileRows {
			continue
		}
		day := floorDiv(ts, dayUS) * dayUS
		if day+dayUS > closed {
			continue
		}
		k := partitionKey(f.PartitionValues) + "@" + strconv.FormatInt(day, 10)
		g := days[k]
		if g == nil {
			g = &group{start: day, tier: TierDay, part: partitionKey(f.PartitionValues)}
			days[k] = g
		}
		g.files = append(g.files, small{f, rows, ts})
		g.rows += rows
	}
	// Days too big for one file: their untiered files by hour instead.
	var groups []*group
	for _, g := range days {
		if g.rows <= o.TargetRows {
			groups = append(groups, g)
			continue
		}
		hours := map[int64]*group{}
		for _, s := range g.files {
			if s.f.Tags[TagCompaction] != "" {
				continue
			}
			h := floorDiv(s.ts, hourUS) * hourUS
			hg := hours[h]
			if hg == nil {
				hg = &group{start: h, tier: TierHour, part: g.part}
				hours[h] = hg
			}
			hg.files = append(hg.files, s)
			hg.rows += s.rows
		}
		for _, hg := range hours {
			groups = append(groups, hg)
		}
	}
	// Hour buckets of the current day that have closed.
	hours := map[string]*group{}
	for _, f := range t.snap.files {
		if f.Tags[TagCompaction] != "" || f.DeletionVector != nil {
			continue
		}
		rows, ts, ok := t.fileTime(f, o.TimeColumn)
		if !ok || rows >= o.SmallFileRows {
			continue
		}
		day := floorDiv(ts, dayUS) * dayUS
		h := floorDiv(ts, hourUS) * hourUS
		if day+dayUS <= closed || h+hourUS > closed {
			continue // the day's groups have it, or its hour is still open
		}
		k := partitionKey(f.PartitionValues) + "@" + strconv.FormatInt(h, 10)
		g := hours[k]
		if g == nil {
			g = &group{start: h, tier: TierHour, part: partitionKey(f.PartitionValues)}
			hours[k] = g
		}
		g.files = append(g.files, small{f, rows, ts})
		g.rows += rows
	}
	for _, g := range hours {
		groups = append(groups, g)
	}
	// Oldest first, over all partitions.
	slices.SortFunc(groups, func(a, b *group) int {
		if c := cmp.Compare(a.start, b.start); c != 0 {
			return c
		}
		if c := strings.Compare(a.part, b.part); c != 0 {
			return c
		}
		return strings.Compare(a.tier, b.tier)
	})
	var actions []Action
	removed := 0
	budget := o.MaxRows
	nowMS := now.UnixMilli()
	for _, g := range groups {
		if budget <= 0 {
			break
		}
		slices.SortFunc(g.files, func(a, b small) int {
			if c := cmp.Compare(a.ts, b.ts); c != 0 {
				return c
			}
			return strings.Compare(a.f.Path, b.f.Path)
		})
		files := g.files
		for len(files) >= o.MinFiles && budget > 0 {
			// The longest run of files, in time order, that fits in a target file.
			var bin []AddFile
			var rows int64
			for len(files) > 0 && (len(bin) == 0 || rows+files[0].rows <= o.TargetRows) {
				bin = append(bin, files[0].f)
				rows += files[0].rows
				files = files[1:]
			}
			if len(bin) < o.MinFiles {
				continue
			}
			budget -= rows
			add, err := rewrite[T](ctx, t, bin)
			if err != nil {
				return 0, fmt.Errorf("compacting %s: %w", t.name, err)
			}
			add.DataChange = false
			add.Tags = map[string]string{TagCompaction: g.tier}
			actions = append(actions, Action{Add: &add})
			for _, f := range bin {
				actions = append(actions, Action{Remove: &RemoveFile{Path: f.Path, DeletionTimestamp: nowMS, DataChange: false,
					ExtendedFileMetadata: true, PartitionValues: f.PartitionValues, Size: f.Size}})
			}
			removed += len(bin)
		}
	}
	if len(actions) == 0 {
		return 0, nil
	}
	if _, err := t.Commit(ctx, actions, "OPTIMIZE"); err != nil {
		return 0, err
	}
	return removed, nil
}

// fileTime is what compaction needs of a file's statistics: its row count
// and the minimum of the time column (µs; the file's modification time
// without it); ok=false: no usable statistics. Compaction runs every hour
// or more often over every live file, so the parsed figures are cached by
// path for the Table's life (pruned to the live files).
func (t *Table) fileTime(f AddFile, col string) (rows, ts int64, ok bool) {
	if t.ftCol != col || t.ftCache == nil {
		t.ftCol, t.ftCache = col, map[string]fileTimes{}
	}
	key := f.Path
	if c, hit := t.ftCache[key]; hit && c.stats == f.Stats {
		c.pass = t.ftPass
		t.ftCache[key] = c
		return c.rows, c.ts, c.ok
	}
	c := fileTimes{stats: f.Stats, pass: t.ftPass}
	if st, err := f.ParsedStats(); err == nil {
		c.rows, c.ok = st.NumRecords, true
		c.ts = f.ModificationTime * 1000
		if v, has := st.MinValues[col]; has {
			if us, err := ParseStatsTime(v); err == nil {
				c.ts = us
			}
		}
	}
	t.ftCache[key] = c
	return c.rows, c.ts, c.ok
}

type fileTimes struct {
	stats    string // the statistics they were parsed from
	rows, ts int64
	ok       bool
	pass     uint64 // the last Compact call that asked (Table.ftPass)
}

type small struct {
	f    AddFile
	rows int64
	ts   int64 // event time that buckets it, µs
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func partitionKey(pv map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(pv)) {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(pv[k])
		b.WriteByte('/')
	}
	return b.String()
}

// rewrite copies the rows of files (all of one partition) into one new data
// file of t, a chunk at a time, and returns its add action.
func rewrite[T any](ctx context.Context, t *Table, files []AddFile) (AddFile, error) {
	ps, err := dataSchema[T](t.opts.PartitionColumns)
	if err != nil {
		return AddFile{}, err
	}
	ds, err := deltaSchema(ps)
	if err != nil {
		return AddFile{}, err
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[T](&buf, append(WriterOptions(t.opts.Compression), ps)...)
	chunk := make([]T, 1024)
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return AddFile{}, err
		}
		if err := copyFile(ctx, t, f, w, chunk); err != nil {
			return AddFile{}, err
		}
	}
	if err := w.Close(); err != nil {
		return AddFile{}, fmt.Errorf("encoding parquet: %w", err)
	}
	st, err := FileStats(buf.Bytes(), ds)
	if err != nil {
		return AddFile{}, err
	}
	return t.PutFile(ctx, buf.Bytes(), st, files[0].PartitionValues)
}

// copyFile writes the rows of data file f of t to w. Partition columns are
// not in the files (nor in w's schema), so they need no filling.
func copyFile[T any](ctx context.Context, t *Table, f AddFile, w *parquet.GenericWriter[T], chunk []T) (err error) {
	p, err := dataPath(t.name, f.Path)
	if err != nil {
		return err
	}
	data, err := t.l.Get(ctx, p)
	if err != nil {
		return fmt.Errorf("reading data file of %s: %w", t.name, err)
	}
	// The file comes from the lake: parquet-go may panic on a corrupt one.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading data file %s of %s: %w: %v", f.Path, t.name, ErrCorruptFile, r)
		}
	}()
	pf, err := OpenParquet(data)
	if err != nil {
		return fmt.Errorf("reading data file %s of %s: %w: %v", f.Path, t.name, ErrCorruptFile, err)
	}
	// Only a file parquet-go reads exactly as it is (no conversion, no
	// nulls, no column mapping) is rewritten: anything else could change
	// values for good.
	plan, err := planFile[T](pf, f.read, f.PartitionValues)
	if err != nil {
		return fmt.Errorf("compacting data file %s of %s: %w: %w", f.Path, t.name, ErrCannotCompact, err)
	}
	if plan.widen { // required columns into nullable fields (a file from before they were nullable): same values
		k := 0
		flush := func() error {
			if _, err := w.Write(chunk[:k]); err != nil {
				return fmt.Errorf("encoding parquet: %w", err)
			}
			k = 0
			return nil
		}
		err := convertRows(pf, plan, nil, func(row T) error {
			chunk[k] = row
			if k++; k == len(chunk) {
				return flush()
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("reading data file %s of %s: %w", f.Path, t.name, err)
		}
		return flush()
	}
	if !plan.fast {
		return fmt.Errorf("compacting data file %s of %s: %w: its columns need conversion", f.Path, t.name, ErrCannotCompact)
	}
	r := parquet.NewGenericReader[T](pf)
	defer r.Close()
	for {
		n, rerr := r.Read(chunk)
		if n > 0 {
			if _, err := w.Write(chunk[:n]); err != nil {
				return fmt.Errorf("encoding parquet: %w", err)
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("reading data file %s of %s: %w: %v", f.Path, t.name, ErrCorruptFile, rerr)
		}
		if n == 0 {
			return fmt.Errorf("reading data file %s of %s: %w: no progress", f.Path, t.name, ErrCorruptFile)
		}
	}
}
