package history

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/parquet-go/parquet-go"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/rollup"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/dashboard/series"
)

// Lake reads the silver and gold Delta tables of a lake, and silver's
// rollup tiers (collector/rollup) for ranges whose points each span a tier's
// bucket or more: a day of 100 devices drawn 300 points wide reads the
// 144 000 rows of silver_1m, not 8.6 million silver windows.
//
// Files are pruned by their device partition value and their window_start
// (and device) statistics. The rows of each data file (immutable in Delta)
// are cached per page in a compact form (64 bytes a silver row, 40 a gold
// row, gold only at the shown moving-average length), least recently used
// pages evicted first, so a page that polls a range re-reads only the files
// committed since, and the views a dashboard cycles through stay decoded.
type Lake struct {
	lake lake.Lake
	// Logger receives a warning for each data file that cannot be read (once per file).
	Logger *slog.Logger
	goldN  int32
	// CacheRows bounds the file cache to CacheRows silver rows' worth of
	// bytes (64 each; a gold row takes 40). Default 1.5 million: 96 MiB.
	CacheRows int
	// Tiers are the rollup tables read for long ranges, finest first
	// (default silver_10s, silver_1m, silver_1h); a tier missing from the
	// lake is skipped.
	Tiers []Tier
	// minReload is the least time between two replays of a table's log.
	minReload time.Duration
	now       func() time.Time

	// rowsScanned counts the cached rows Series looked at (tests, benchmarks).
	rowsScanned atomic.Int64

	mu     sync.Mutex
	bad    map[string]bool // data files that could not be read
	snaps  map[string]snapEntry
	index  map[string][]segment     // table/path → its segments
	bounds map[string]fileBounds    // table/path → what pruning needs
	cache  map[string]*list.Element // table/path#first row → its *cached in lru
	lru    list.List                // of *cached, least recently used first
	bytes  int                      // of the cached rows
}

// cached is one entry of the page cache.
type cached struct {
	key string
	c   *chunk
}

// Tier is a rollup table of silver and its bucket width.
type Tier struct {
	Table string
	Width time.Duration
}

// DefaultTiers are the collector's rollup tiers.
func DefaultTiers() []Tier {
	var out []Tier
	for _, t := range rollup.DefaultTiers() {
		out = append(out, Tier{Table: t.Table, Width: t.Width})
	}
	return out
}

type snapEntry struct {
	snap   *delta.Snapshot
	at     time.Time
	pruned time.Time // when the index last dropped files gone from the table
}

// crow is one cached row: a silver (or tier) window with its band, or a
// gold moving average (band unused).
type crow struct {
	ws     int64 // µs
	n      int32 // readings (silver), saturated
	dev    uint16
	v      [3]float64
	lo, hi [3]float32
}

// grow is one cached gold row: a moving average.
type grow struct {
	ws  int64 // µs
	dev uint16
	v   [3]float64
}

// Sizes of the cached rows, for the cache's bound.
const (
	crowBytes = int(unsafe.Sizeof(crow{}))
	growBytes = int(unsafe.Sizeof(grow{}))
)

// chunk is the cached rows of one page (or row group) of a data file:
// silver or tier windows in rows, gold moving averages in gold.
type chunk struct {
	devs  []string
	rows  []crow
	gold  []grow
	minWS int64 // the first window: chunks are read in time order
}

func (c *chunk) bytes() int { return len(c.rows)*crowBytes + len(c.gold)*growBytes }

var _ Source = (*Lake)(nil)

// NewLake returns a history source over l, showing gold moving averages of
// goldN windows.
func NewLake(l lake.Lake, goldN int32) *Lake {
	if goldN == 0 {
		goldN = 8
	}
	return &Lake{lake: l, goldN: goldN, CacheRows: 3 << 19, Tiers: DefaultTiers(), minReload: 500 * time.Millisecond, now: time.Now,
		snaps: map[string]snapEntry{}, index: map[string][]segment{}, bounds: map[string]fileBounds{}, cache: map[string]*list.Element{}, bad: map[string]bool{}}
}

// snapshot returns table's snapshot, replaying the log at most every minReload;
// a table that does not exist yet has no files (nil, nil).
func (h *Lake) snapshot(ctx context.Context, table string) (*delta.Snapshot, error) {
	h.mu.Lock()
	e, ok := h.snaps[table]
	h.mu.Unlock()
	if ok && h.now().Sub(e.at) < h.minReload {
		return e.snap, nil
	}
	snap, err := delta.LoadAfter(ctx, h.lake, table, e.snap)
	if errors.Is(err, delta.ErrNoTable) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	pruned := e.pruned
	if now.Sub(pruned) > time.Minute {
		// Forget the page index and the bad marks of files the table no
		// longer has (compaction replaces files all day): a dashboard that
		// runs for a month must not keep a month of file names.
		pruned = now
		live := make(map[string]bool, snap.NumFiles())
		for _, f := range snap.Files() {
			live[table+"/"+f.Path] = true
		}
		for k := range h.index {
			if strings.HasPrefix(k, table+"/") && !live[k] {
				delete(h.index, k)
			}
		}
		for k := range h.bounds {
			if strings.HasPrefix(k, table+"/") && !live[k] {
				delete(h.bounds, k)
			}
		}
		for k := range h.bad {
			if strings.HasPrefix(k, table+"/") && !live[k] {
				delete(h.bad, k)
			}
		}
	}
	h.snaps[table] = snapEntry{snap: snap, at: now, pruned: pruned}
	return snap, nil
}

// fileBounds is what pruning needs of a data file's add action, parsed
// once per file (a table of thousands of small files is pruned on every
// request, and parsing each file's statistics JSON each time cost more
// than reading the few pages a range needs).
type fileBounds struct {
	partDev        string // the device partition value ("" if none)
	partitioned    bool
	minWS, maxWS   int64 // µs; math.MinInt64 / MaxInt64 when unknown
	minDev, maxDev string
	devStats       bool // minDev and maxDev known
}

// parseBounds reads f's partition value and statistics.
func parseBounds(f delta.AddFile) fileBounds {
	b := fileBounds{minWS: math.MinInt64, maxWS: math.MaxInt64}
	b.partDev, b.partitioned = f.PartitionValues["device"]
	st, err := f.ParsedStats()
	if err != nil {
		return b // no statistics: read it
	}
	if v, ok := st.MinValues["window_start"]; ok {
		if min, err := delta.ParseStatsTime(v); err == nil {
			b.minWS = min
		}
	}
	if v, ok := st.MaxValues["window_start"]; ok {
		// maxValues are truncated to milliseconds: the true max is < stat+1 ms.
		if max, err := delta.ParseStatsTime(v); err == nil {
			b.maxWS = max + 999
		}
	}
	if mn, ok := st.MinValues["device"].(string); ok {
		if mx, ok := st.MaxValues["device"].(string); ok {
			b.minDev, b.maxDev, b.devStats = mn, mx, true
		}
	}
	return b
}

// keep reports whether the file may hold rows of device (""=any) with
// window_start in [fromUS, toUS).
func (b *fileBounds) keep(device string, fromUS, toUS int64) bool {
	if device != "" && b.partitioned && b.partDev != device {
		return false
	}
	if b.minWS >= toUS || b.maxWS < fromUS {
		return false
	}
	if device != "" && b.devStats && (device < b.minDev || device > b.maxDev) {
		return false
	}
	return true
}

// keepFile reports whether table's file f may hold rows of device (""=any)
// with window_start in [fromUS, toUS), from its bounds parsed once.
func (h *Lake) keepFile(table string, f delta.AddFile, device string, fromUS, toUS int64) bool {
	key := table + "/" + f.Path
	h.mu.Lock()
	b, ok := h.bounds[key]
	h.mu.Unlock()
	if !ok {
		b = parseBounds(f)
		h.mu.Lock()
		if h.bounds == nil {
			h.bounds = map[string]fileBounds{}
		}
		h.bounds[key] = b
		h.mu.Unlock()
	}
	return b.keep(device, fromUS, toUS)
}

// files returns the rows of table's files kept by keep whose pages may hold
// windows in [lo, hi), from the cache or the lake, and the table's snapshot.
func (h *Lake) files(ctx context.Context, table string, keep func(delta.AddFile) bool, lo, hi int64) ([]*chunk, *delta.Snapshot, error) {
	snap, err := h.snapshot(ctx, table)
	if err != nil || snap == nil {
		return nil, nil, err
	}
	var out []*chunk
	for _, f := range snap.Files() {
		if !keep(f) {
			continue
		}
		key := table + "/" + f.Path
		h.mu.Lock()
		bad := h.bad[key]
		h.mu.Unlock()
		if bad {
			continue
		}
		rec := &getRecorder{Lake: h.lake}
		cs, err := h.pages(ctx, rec, table, key, f, lo, hi)
		if err != nil {
			if ctx.Err() != nil || !(rec.got || errors.Is(err, lake.ErrNotFound)) {
				return nil, nil, fmt.Errorf("reading history: %w", err) // storage trouble: say so
			}
			// The file is gone or its bytes are not a readable Parquet file:
			// that loses its rows, not the page. Skip it and say so once.
			h.mu.Lock()
			first := !h.bad[key]
			h.bad[key] = true
			h.mu.Unlock()
			if first && h.Logger != nil {
				h.Logger.Warn("skipping unreadable data file", "table", table, "file", f.Path, "err", err)
			}
			continue
		}
		out = append(out, cs...)
	}
	// Data file names are random: order them by time, so that rows mostly
	// arrive sorted and the per-device sort is a linear check.
	sort.SliceStable(out, func(i, j int) bool { return out[i].minWS < out[j].minWS })
	return out, snap, nil
}

// segment is a run of a data file's rows: one page of its window_start
// column (from the Parquet page index), or a whole row group when the file
// has no page index.
type segment struct {
	first, n     int64 // rows
	minWS, maxWS int64 // µs; the page index's min and max
}

// pages returns the chunks of f's segments that may hold windows in
// [lo, hi), decoding only those: a 15 min view of a file holding hours
// decodes a few 32 k-row pages, not the file.
func (h *Lake) pages(ctx context.Context, l lake.Lake, table, key string, f delta.AddFile, lo, hi int64) ([]*chunk, error) {
	h.mu.Lock()
	segs, indexed := h.index[key]
	var out []*chunk
	var missing []segment
	if indexed {
		for _, sg := range segs {
			if sg.maxWS < lo || sg.minWS >= hi {
				continue
			}
			if c := h.hitLocked(segKey(key, sg)); c != nil {
				out = append(out, c)
			} else {
				missing = append(missing, sg)
			}
		}
	}
	h.mu.Unlock()
	if indexed && len(missing) == 0 {
		return out, nil
	}
	p, err := dataPath(table, f.Path)
	if err != nil {
		return nil, err
	}
	data, err := l.Get(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("reading data file of %s: %w", table, err)
	}
	return h.decode(table, key, f, data, lo, hi, indexed, out, missing)
}

// dataPath maps an add action's relative, URI-encoded path to an object name.
func dataPath(table, p string) (string, error) {
	rel, err := delta.CanonicalPath(p)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(rel, "/") || strings.Contains(rel, "://") {
		return "", fmt.Errorf("absolute data file path %q: %w", p, delta.ErrUnsupported)
	}
	name := table + "/" + rel
	if err := lake.CheckName(name); err != nil {
		return "", err
	}
	return name, nil
}

func segKey(key string, sg segment) string { return key + "#" + strconv.FormatInt(sg.first, 10) }

// decode opens a data file's bytes, indexes it (once), and decodes the
// segments in [lo, hi) not cached yet.
func (h *Lake) decode(table, key string, f delta.AddFile, data []byte, lo, hi int64, indexed bool, out []*chunk, missing []segment) (_ []*chunk, err error) {
	// The file comes from the lake: parquet-go may panic on a corrupt one.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading data file %s of %s: %w: %v", f.Path, table, delta.ErrCorruptFile, r)
		}
	}()
	pf, err := delta.OpenParquet(data)
	if err != nil {
		return nil, fmt.Errorf("reading data file %s of %s: %w", f.Path, table, err)
	}
	if !indexed {
		segs := indexFile(pf)
		h.mu.Lock()
		h.index[key] = segs
		for _, sg := range segs {
			if sg.maxWS < lo || sg.minWS >= hi {
				continue
			}
			if c := h.hitLocked(segKey(key, sg)); c != nil {
				out = append(out, c)
			} else {
				missing = append(missing, sg)
			}
		}
		h.mu.Unlock()
	}
	dev := f.PartitionValues["device"]
	if table == schema.Gold {
		r := parquet.NewGenericReader[schema.GoldRow](pf)
		defer r.Close()
		for _, sg := range missing {
			c := newChunk()
			err := readRows(r, sg, func(rows []schema.GoldRow) {
				for i := range rows {
					x := &rows[i]
					if dev != "" {
						x.Device = dev
					}
					hum, press := series.Opt(x.HumidityRH), series.Opt(x.PressurePa) // NaN: null, a gap
					if x.N != h.goldN || !series.FiniteOrMissing(x.TempC, hum, press, x.HumidityRH == nil, x.PressurePa == nil) {
						continue
					}
					c.addGold(grow{ws: x.WindowStart, v: [3]float64{x.TempC, hum, press}}, x.Device)
				}
			})
			if err != nil {
				return nil, fmt.Errorf("reading data file %s of %s: %w: %v", f.Path, table, delta.ErrCorruptFile, err)
			}
			out = append(out, h.put(segKey(key, sg), c.done()))
		}
		return out, nil
	}
	r := parquet.NewGenericReader[schema.SilverRow](pf)
	defer r.Close()
	for _, sg := range missing {
		c := newChunk()
		err := readRows(r, sg, func(rows []schema.SilverRow) {
			for i := range rows {
				x := &rows[i]
				if dev != "" {
					x.Device = dev
				}
				p, ok := series.SilverPoint(x)
				if !ok {
					continue
				}
				c.add(crow{ws: x.WindowStart, n: int32(min(x.Count, math.MaxInt32)), v: p.V,
					lo: [3]float32{float32(p.Lo[0]), float32(p.Lo[1]), float32(p.Lo[2])},
					hi: [3]float32{float32(p.Hi[0]), float32(p.Hi[1]), float32(p.Hi[2])}}, x.Device)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("reading data file %s of %s: %w: %v", f.Path, table, delta.ErrCorruptFile, err)
		}
		out = append(out, h.put(segKey(key, sg), c.done()))
	}
	return out, nil
}

// readRows reads segment sg's rows with r, handing them to fn a few
// thousand at a time (fn must not keep the slice: it is reused).
func readRows[T any](r *parquet.GenericReader[T], sg segment, fn func([]T)) error {
	if err := r.SeekToRow(sg.first); err != nil {
		return err
	}
	buf := make([]T, min(sg.n, 4096)) // the footer's counts are not trusted for an allocation
	for done := int64(0); done < sg.n; {
		k, err := r.Read(buf[:min(int64(len(buf)), sg.n-done)])
		fn(buf[:k])
		done += int64(k)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if k == 0 {
			return errors.New("no progress")
		}
	}
	return nil
}

// indexFile returns the segments of a Parquet file: the pages of its
// window_start column with their min and max from the page index, or each
// whole row group (unbounded) when the file has no page index.
func indexFile(pf *parquet.File) []segment {
	prs := delta.PageRanges(pf, "window_start")
	out := make([]segment, len(prs))
	for i, r := range prs {
		out[i] = segment{first: r.First, n: r.N, minWS: r.Min, maxWS: r.Max}
	}
	return out
}

func newChunk() *chunkBuilder {
	return &chunkBuilder{c: &chunk{minWS: math.MaxInt64}, devs: map[string]uint16{}}
}

type chunkBuilder struct {
	c    *chunk
	devs map[string]uint16
}

// dev returns dev's number in the chunk (false when the chunk has too many).
func (b *chunkBuilder) dev(dev string) (uint16, bool) {
	i, ok := b.devs[dev]
	if !ok {
		if len(b.c.devs) >= math.MaxUint16 {
			return 0, false
		}
		i = uint16(len(b.c.devs))
		b.devs[dev] = i
		b.c.devs = append(b.c.devs, dev)
	}
	return i, true
}

func (b *chunkBuilder) add(r crow, dev string) {
	i, ok := b.dev(dev)
	if !ok {
		return
	}
	r.dev = i
	b.c.rows = append(b.c.rows, r)
	b.c.minWS = min(b.c.minWS, r.ws)
}

func (b *chunkBuilder) addGold(r grow, dev string) {
	i, ok := b.dev(dev)
	if !ok {
		return
	}
	r.dev = i
	b.c.gold = append(b.c.gold, r)
	b.c.minWS = min(b.c.minWS, r.ws)
}

// done returns the chunk, its slices trimmed to their length (the cache
// counts what they hold).
func (b *chunkBuilder) done() *chunk {
	b.c.rows = slices.Clip(b.c.rows)
	b.c.gold = slices.Clip(b.c.gold)
	if cap(b.c.rows) == 0 {
		b.c.rows = nil
	}
	return b.c
}

// getRecorder notes whether a Get succeeded, to tell a storage failure from
// a file whose content cannot be decoded.
type getRecorder struct {
	lake.Lake
	got bool
}

func (g *getRecorder) Get(ctx context.Context, name string) ([]byte, error) {
	b, err := g.Lake.Get(ctx, name)
	g.got = err == nil
	return b, err
}

// hitLocked returns the cached chunk of key (nil if none) and marks it
// recently used. h.mu must be held.
func (h *Lake) hitLocked(key string) *chunk {
	e, ok := h.cache[key]
	if !ok {
		return nil
	}
	h.lru.MoveToBack(e)
	return e.Value.(*cached).c
}

// put caches c under key, evicting the least recently used chunks beyond
// the bound, and returns the cached chunk of key.
func (h *Lake) put(key string, c *chunk) *chunk {
	h.mu.Lock()
	defer h.mu.Unlock()
	if old := h.hitLocked(key); old != nil {
		return old
	}
	if h.cache == nil {
		h.cache = map[string]*list.Element{}
	}
	h.cache[key] = h.lru.PushBack(&cached{key: key, c: c})
	h.bytes += c.bytes()
	limit := h.CacheRows * crowBytes
	for h.bytes > limit && h.lru.Len() > 1 {
		old := h.lru.Remove(h.lru.Front()).(*cached)
		h.bytes -= old.c.bytes()
		delete(h.cache, old.key)
	}
	return c
}

// CachedBytes returns the bytes of rows the page cache holds.
func (h *Lake) CachedBytes() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bytes
}

// Warm replays the Delta logs of silver, gold and the tiers, so that the
// first page load does not wait for it; a failure is left for that load to
// report.
func (h *Lake) Warm(ctx context.Context) {
	tables := []string{schema.Silver, schema.Gold}
	for _, t := range h.Tiers {
		tables = append(tables, t.Table)
	}
	for _, t := range tables {
		if _, err := h.snapshot(ctx, t); err != nil && h.Logger != nil {
			h.Logger.Debug("warming history", "table", t, "err", err)
		}
	}
}

// RowsScanned returns how many rows Series has looked at since the Lake
// was made: what a range costs, beside what it draws.
func (h *Lake) RowsScanned() int64 { return h.rowsScanned.Load() }

// Devices returns the devices that have gold rows.
func (h *Lake) Devices(ctx context.Context) ([]string, error) {
	set := map[string]bool{}
	tables := []string{schema.Gold, schema.Silver}
	// With rollup tiers, the newest hour of the finest tier of a minute or
	// more (100 devices: 6 000 rows) instead of an hour of gold and silver.
	for _, t := range h.Tiers {
		if t.Width >= time.Minute {
			if snap, err := h.snapshot(ctx, t.Table); err == nil && snap != nil {
				if _, ok := rollup.Frontier(snap); ok {
					tables = []string{t.Table, schema.Gold}
				}
			}
			break
		}
	}
	for _, table := range tables {
		snap, err := h.snapshot(ctx, table)
		if err != nil {
			return nil, err
		}
		if snap == nil {
			continue
		}
		partitioned := false
		for _, f := range snap.Files() {
			if d, ok := f.PartitionValues["device"]; ok {
				set[d] = true
				partitioned = true
			}
		}
		if partitioned {
			continue
		}
		// Not partitioned by device: look at the newest hour of rows.
		to := h.now().UnixMicro() + 1
		from := to - time.Hour.Microseconds()
		cs, _, err := h.files(ctx, table, func(f delta.AddFile) bool { return h.keepFile(table, f, "", from, to) }, from, to)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			for _, d := range c.devs {
				set[d] = true
			}
		}
		if len(cs) > 0 {
			break // the newest hour of one table is enough (gold partitions are listed, not read)
		}
	}
	out := make([]string, 0, len(set))
	for d := range set {
		if d != "" {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Series reads q's devices and range: silver and gold rows when a point
// spans less than the finest tier's bucket, otherwise the coarsest tier
// whose buckets fit in a point (the rows after that tier's frontier from
// the finer tiers and silver). Gold is not read with tiers: a moving
// average of 8 one-second windows is finer than such a point (a lake
// without rollup tables shows gold at every range).
func (h *Lake) Series(ctx context.Context, q Query) ([]series.Series, error) {
	fromUS, toUS := q.FromMS*1000, q.ToMS*1000
	byDev := map[string]*series.Series{}
	get := func(d string) *series.Series {
		if x, ok := byDev[d]; ok {
			return x
		}
		x := &series.Series{Device: d}
		byDev[d] = x
		return x
	}
	widthMS := series.BucketWidth(q.FromMS, q.ToMS, q.MaxPoints)
	if q.MaxPoints <= 0 {
		widthMS = 0
	}
	tier := -1
	for i, t := range h.Tiers {
		// A tier whose buckets are up to 1.5 points wide still draws the
		// range at about the card's width (1 h on a 410 px card: 360
		// points of 10 s instead of 3600 windows).
		if 2*t.Width.Milliseconds() <= 3*widthMS {
			tier = i
		}
	}
	tiered := false
	add := func(c *chunk, lo, hi int64) {
		h.rowsScanned.Add(int64(len(c.rows)))
		for i := range c.rows {
			r := &c.rows[i]
			d := c.devs[r.dev]
			if r.ws < lo || r.ws >= hi || d == "" || (q.Device != "" && d != q.Device) {
				continue
			}
			get(d).Silver.AppendPoint(series.Point{T: series.MS(r.ws), V: r.v, Band: true, N: int64(r.n),
				Lo: [3]float64{float64(r.lo[0]), float64(r.lo[1]), float64(r.lo[2])},
				Hi: [3]float64{float64(r.hi[0]), float64(r.hi[1]), float64(r.hi[2])}})
		}
	}
	// read adds the windows in [lo, hi) from tier k (-1: silver): whole
	// buckets before the tier's frontier from the tier, the rest from finer levels.
	var read func(k int, lo, hi int64) error
	read = func(k int, lo, hi int64) error {
		if lo >= hi {
			return nil
		}
		table := schema.Silver
		if k >= 0 {
			table = h.Tiers[k].Table
		}
		snap, err := h.snapshot(ctx, table)
		if err != nil {
			return err
		}
		a, b := lo, hi
		if k >= 0 {
			fr, ok := int64(0), false
			if snap != nil {
				fr, ok = rollup.Frontier(snap)
			}
			if !ok {
				return read(k-1, lo, hi)
			}
			tiered = true
			w := h.Tiers[k].Width.Microseconds()
			a = (lo + w - 1) / w * w
			b = min(hi/w*w, fr)
			if a >= b {
				return read(k-1, lo, hi)
			}
			if err := read(k-1, lo, a); err != nil {
				return err
			}
		}
		cs, _, err := h.files(ctx, table, func(f delta.AddFile) bool { return h.keepFile(table, f, q.Device, a, b) }, a, b)
		if err != nil {
			return err
		}
		for _, c := range cs {
			add(c, a, b)
		}
		if k >= 0 {
			return read(k-1, b, hi)
		}
		return nil
	}
	if err := read(tier, fromUS, toUS); err != nil {
		return nil, err
	}
	if !tiered { // a lake without rollups shows gold at every range, as before
		cs, _, err := h.files(ctx, schema.Gold, func(f delta.AddFile) bool { return h.keepFile(schema.Gold, f, q.Device, fromUS, toUS) }, fromUS, toUS)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			h.rowsScanned.Add(int64(len(c.gold)))
			for i := range c.gold {
				r := &c.gold[i]
				d := c.devs[r.dev]
				if r.ws < fromUS || r.ws >= toUS || d == "" || (q.Device != "" && d != q.Device) {
					continue
				}
				get(d).Gold.Append(series.MS(r.ws), r.v[0], r.v[1], r.v[2])
			}
		}
	}
	out := make([]series.Series, 0, len(byDev))
	for _, x := range byDev {
		finish(x, q)
		out = append(out, *x)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Device < out[j].Device })
	return out, nil
}
