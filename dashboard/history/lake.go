package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/dashboard/series"
)

// Lake reads the silver and gold Delta tables of a lake. Files are pruned by
// their device partition value and their window_start statistics, and the
// rows of each data file (immutable in Delta) are cached, so a page that
// polls a range re-reads only the files committed since.
type Lake struct {
	lake lake.Lake
	// Log receives a warning for each data file that cannot be read (once per file).
	Log   *slog.Logger
	goldN int32
	// CacheRows bounds the rows kept in the file cache (default 4 million).
	cacheRows int
	// minReload is the least time between two replays of a table's log.
	minReload time.Duration
	now       func() time.Time

	mu    sync.Mutex
	bad   map[string]bool // data files that could not be read
	snaps map[string]snapEntry
	cache map[string]cached // table/path → rows
	order []string          // cache keys, oldest first
	rows  int
}

type snapEntry struct {
	snap *delta.Snapshot
	at   time.Time
}

type cached struct {
	silver []schema.SilverRow
	gold   []schema.GoldRow
	minWS  int64 // the file's first window: files are read in time order
}

var _ Source = (*Lake)(nil)

// NewLake returns a history source over l, showing gold moving averages of
// goldN windows.
func NewLake(l lake.Lake, goldN int32) *Lake {
	if goldN == 0 {
		goldN = 8
	}
	return &Lake{lake: l, goldN: goldN, cacheRows: 4 << 20, minReload: 500 * time.Millisecond, now: time.Now,
		snaps: map[string]snapEntry{}, cache: map[string]cached{}, bad: map[string]bool{}}
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
	snap, err := delta.Load(ctx, h.lake, table)
	if errors.Is(err, delta.ErrNoTable) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.snaps[table] = snapEntry{snap: snap, at: h.now()}
	h.mu.Unlock()
	return snap, nil
}

// keepFile reports whether f may hold rows of device (""=any) with
// window_start in [fromUS, toUS).
func keepFile(f delta.AddFile, device string, fromUS, toUS int64) bool {
	if device != "" {
		if d, ok := f.PartitionValues["device"]; ok && d != device {
			return false
		}
	}
	st, err := f.ParsedStats()
	if err != nil {
		return true // no statistics: read it
	}
	if v, ok := st.MinValues["window_start"]; ok {
		if min, err := delta.ParseStatsTime(v); err == nil && min >= toUS {
			return false
		}
	}
	if v, ok := st.MaxValues["window_start"]; ok {
		// maxValues are truncated to milliseconds: the true max is < stat+1 ms.
		if max, err := delta.ParseStatsTime(v); err == nil && max+1000 <= fromUS {
			return false
		}
	}
	if device != "" {
		if mn, ok := st.MinValues["device"].(string); ok {
			if mx, ok := st.MaxValues["device"].(string); ok && (device < mn || device > mx) {
				return false
			}
		}
	}
	return true
}

// files returns the rows of table's files kept by keep, from the cache or the lake.
func (h *Lake) files(ctx context.Context, table string, keep func(delta.AddFile) bool) ([]cached, error) {
	snap, err := h.snapshot(ctx, table)
	if err != nil || snap == nil {
		return nil, err
	}
	var out []cached
	for _, f := range snap.Files() {
		if !keep(f) {
			continue
		}
		key := table + "/" + f.Path
		h.mu.Lock()
		c, ok := h.cache[key]
		h.mu.Unlock()
		if !ok {
			one := []delta.AddFile{f}
			rec := &getRecorder{Lake: h.lake}
			switch table {
			case schema.Silver:
				c.silver, err = delta.ReadFiles[schema.SilverRow](ctx, rec, table, one, nil)
			default:
				c.gold, err = delta.ReadFiles[schema.GoldRow](ctx, rec, table, one, nil)
			}
			if err != nil {
				if ctx.Err() != nil || !(rec.got || errors.Is(err, lake.ErrNotFound)) {
					return nil, fmt.Errorf("reading history: %w", err) // storage trouble: say so
				}
				// The file is gone or its bytes are not a readable Parquet file:
				// that loses its rows, not the page. Skip it and say so once.
				h.mu.Lock()
				first := !h.bad[key]
				h.bad[key] = true
				h.mu.Unlock()
				if first && h.Log != nil {
					h.Log.Warn("skipping unreadable data file", "table", table, "file", f.Path, "err", err)
				}
				continue
			}
			c.minWS = math.MaxInt64
			for i := range c.silver {
				c.minWS = min(c.minWS, c.silver[i].WindowStart)
			}
			for i := range c.gold {
				c.minWS = min(c.minWS, c.gold[i].WindowStart)
			}
			h.put(key, c)
		}
		out = append(out, c)
	}
	// Data file names are random: order them by time, so that rows mostly
	// arrive sorted and the per-device sort is a linear check.
	sort.SliceStable(out, func(i, j int) bool { return out[i].minWS < out[j].minWS })
	return out, nil
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

func (h *Lake) put(key string, c cached) {
	n := len(c.silver) + len(c.gold)
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.cache[key]; ok {
		return
	}
	h.cache[key] = c
	h.order = append(h.order, key)
	h.rows += n
	for h.rows > h.cacheRows && len(h.order) > 1 {
		old := h.order[0]
		h.order = h.order[1:]
		oc := h.cache[old]
		h.rows -= len(oc.silver) + len(oc.gold)
		delete(h.cache, old)
	}
}

// Devices returns the devices that have gold rows.
func (h *Lake) Devices(ctx context.Context) ([]string, error) {
	set := map[string]bool{}
	for _, table := range []string{schema.Gold, schema.Silver} {
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
		cs, err := h.files(ctx, table, func(f delta.AddFile) bool { return keepFile(f, "", from, to) })
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			for i := range c.silver {
				set[c.silver[i].Device] = true
			}
			for i := range c.gold {
				set[c.gold[i].Device] = true
			}
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

// Series reads silver and gold rows of q's devices and range.
func (h *Lake) Series(ctx context.Context, q Query) ([]series.Series, error) {
	fromUS, toUS := q.FromMS*1000, q.ToMS*1000
	keep := func(f delta.AddFile) bool { return keepFile(f, q.Device, fromUS, toUS) }
	byDev := map[string]*series.Series{}
	get := func(d string) *series.Series {
		if x, ok := byDev[d]; ok {
			return x
		}
		x := &series.Series{Device: d}
		byDev[d] = x
		return x
	}
	in := func(dev string, ws int64) bool {
		return dev != "" && (q.Device == "" || dev == q.Device) && ws >= fromUS && ws < toUS
	}
	silver, err := h.files(ctx, schema.Silver, keep)
	if err != nil {
		return nil, err
	}
	for _, c := range silver {
		for i := range c.silver {
			r := &c.silver[i]
			if in(r.Device, r.WindowStart) {
				get(r.Device).Silver.AppendSilver(r)
			}
		}
	}
	gold, err := h.files(ctx, schema.Gold, keep)
	if err != nil {
		return nil, err
	}
	for _, c := range gold {
		for i := range c.gold {
			r := &c.gold[i]
			if r.N == h.goldN && in(r.Device, r.WindowStart) {
				get(r.Device).Gold.AppendGold(r)
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
