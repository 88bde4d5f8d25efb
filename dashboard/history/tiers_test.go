package history_test

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/rollup"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/dashboard/history"
	"github.com/pilake/pilake/dashboard/internal/laketest"
	"github.com/pilake/pilake/dashboard/internal/sqltest"
)

// TestPlantedSpikeEveryRange: two hours of 1 s windows of two devices with
// the rollup tiers beside them, and one window whose readings spiked to
// 45 °C 20 s before the end. Every range the page offers, drawn 300 points
// wide, shows the spike in its band; long ranges read the tiers (about as
// many rows as they draw), and give the same band and means as silver.
func TestPlantedSpikeEveryRange(t *testing.T) {
	ctx := context.Background()
	l := lake.NewMemory()
	w := laketest.NewWriter(t, l)
	end := time.Unix(1_790_006_400, 0) // an hour boundary
	start := end.Add(-2 * time.Hour)
	spike := end.Add(-20 * time.Second).UnixMicro()
	devs := []string{"dev-a", "dev-b"}
	roller := rollup.New(l, rollup.Options{Grace: 2 * time.Second})
	for m := start; m.Before(end); m = m.Add(5 * time.Minute) {
		var rows []schema.SilverRow
		var gold []schema.GoldRow
		for _, d := range devs {
			for s := range 300 {
				ws := m.Add(time.Duration(s) * time.Second).UnixMicro()
				r := sqltest.Silver(d, ws, 21+float64(s%7)/100, 40, 101000)
				if d == "dev-b" && ws == spike {
					r.TempAvg, r.TempMax = 25, 45
				}
				rows = append(rows, r)
				gold = append(gold, sqltest.Gold(d, ws, 8, 21, 40, 101000))
			}
		}
		w.Silver(rows...)
		w.Gold(gold...)
		if _, err := roller.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	now := end.Add(time.Second)
	ranges := map[string]time.Duration{"1m": time.Minute, "15m": 15 * time.Minute, "1h": time.Hour, "24h": 24 * time.Hour,
		"custom 90m": 90 * time.Minute}
	for name, d := range ranges {
		for _, dev := range []string{"", "dev-b"} {
			t.Run(name+"/"+dev, func(t *testing.T) {
				q := history.Query{Device: dev, FromMS: now.Add(-d).UnixMilli(), ToMS: now.UnixMilli(), MaxPoints: 300}
				tiered := history.NewLake(l, 8)
				got, err := tiered.Series(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				plain := history.NewLake(l, 8)
				plain.Tiers = nil
				ref, err := plain.Series(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(ref) || len(got) == 0 {
					t.Fatalf("%d series, silver alone %d", len(got), len(ref))
				}
				for i, s := range got {
					c := s.Silver
					if c.Len() == 0 || c.Len() > q.MaxPoints || !c.HasBand() {
						t.Fatalf("%s: %d points (max %d), band %v", s.Device, c.Len(), q.MaxPoints, c.HasBand())
					}
					hi, mean := math.Inf(-1), math.Inf(-1)
					for k := range c.T {
						hi, mean = math.Max(hi, c.TempHi[k]), math.Max(mean, c.TempC[k])
					}
					if s.Device == "dev-b" && (hi != 45 || mean <= 21.07) {
						t.Errorf("%s: band max %v (want the spike, 45), mean max %v", s.Device, hi, mean)
					}
					if s.Device == "dev-a" && hi > 21.2 {
						t.Errorf("%s: band max %v, want no spike", s.Device, hi)
					}
					// Same readings behind the view as silver alone.
					var n, nref int64
					for k := range c.T {
						n += c.N[k]
					}
					for k := range ref[i].Silver.T {
						nref += ref[i].Silver.N[k]
					}
					if n != nref {
						t.Errorf("%s: %d readings behind the points, silver alone %d", s.Device, n, nref)
					}
				}
				if d >= time.Hour && tiered.RowsScanned() > plain.RowsScanned()/5 {
					t.Errorf("tiers scanned %d rows, silver alone %d", tiered.RowsScanned(), plain.RowsScanned())
				}
			})
		}
	}
}

// TestPageIndexPruning: one silver file of 120 000 windows in time order;
// a minute of it decodes the page or two that hold it, and gives the same
// points as the rows themselves.
func TestPageIndexPruning(t *testing.T) {
	ctx := context.Background()
	l := lake.NewMemory()
	w := laketest.NewWriter(t, l)
	t0 := time.Unix(1_790_000_000, 0)
	var rows []schema.SilverRow
	for s := range 40000 {
		for _, d := range []string{"dev-a", "dev-b", "dev-c"} {
			rows = append(rows, sqltest.Silver(d, t0.Add(time.Duration(s)*time.Second).UnixMicro(), float64(s), 40, 101000))
		}
	}
	w.Silver(rows...)
	h := history.NewLake(l, 8)
	from := t0.Add(30000 * time.Second)
	got, err := h.Series(ctx, history.Query{Device: "dev-b", FromMS: from.UnixMilli(), ToMS: from.Add(time.Minute).UnixMilli(), MaxPoints: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Silver.Len() != 60 || got[0].Silver.TempC[0] != 30000 || got[0].Silver.TempC[59] != 30059 {
		t.Fatalf("got %+v", got)
	}
	if n := h.RowsScanned(); n == 0 || n > int64(len(rows))/2 {
		t.Errorf("scanned %d of %d rows for a minute", n, len(rows))
	}
}

// countingLake counts the data files read (log files not counted).
type countingLake struct {
	lake.Lake
	mu   sync.Mutex
	gets map[string]int
}

func (c *countingLake) Get(ctx context.Context, name string) ([]byte, error) {
	if !strings.Contains(name, "_delta_log") {
		c.mu.Lock()
		c.gets[name]++
		c.mu.Unlock()
	}
	return c.Lake.Get(ctx, name)
}

func (c *countingLake) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.gets {
		n += k
	}
	return n
}

// TestPageCacheKeepsRecentlyUsed: a cache that holds two pages of a silver
// file keeps the page a dashboard keeps asking for and evicts the one it
// asked for least recently (a cache that evicted in insertion order
// decoded the hot page again on every cycle of views).
func TestPageCacheKeepsRecentlyUsed(t *testing.T) {
	ctx := context.Background()
	mem := lake.NewMemory()
	w := laketest.NewWriter(t, mem)
	t0 := time.Unix(1_790_000_000, 0)
	var rows []schema.SilverRow
	for s := range 40000 { // 120 000 rows: four pages of window_start
		for _, d := range []string{"dev-a", "dev-b", "dev-c"} {
			rows = append(rows, sqltest.Silver(d, t0.Add(time.Duration(s)*time.Second).UnixMicro(), float64(s), 40, 101000))
		}
	}
	w.Silver(rows...)
	cl := &countingLake{Lake: mem, gets: map[string]int{}}
	h := history.NewLake(cl, 8)
	h.CacheRows = 70000 // two pages of about 32 000 rows
	read := func(sec int) {
		t.Helper()
		from := t0.Add(time.Duration(sec) * time.Second)
		got, err := h.Series(ctx, history.Query{Device: "dev-a", FromMS: from.UnixMilli(), ToMS: from.Add(time.Minute).UnixMilli(), MaxPoints: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Silver.Len() != 60 || got[0].Silver.TempC[0] != float64(sec) {
			t.Fatalf("minute at %d s: got %+v", sec, got)
		}
	}
	read(1000)  // page 0
	read(15000) // page 1
	if n := cl.total(); n != 2 {
		t.Fatalf("%d data file reads for two pages, want 2", n)
	}
	read(1000) // page 0 again: cached, and now the most recently used
	if n := cl.total(); n != 2 {
		t.Fatalf("page 0 read again from the lake (%d reads): not cached", n)
	}
	read(25000) // page 2: evicts page 1, the least recently used
	read(1000)  // page 0: still cached
	if n := cl.total(); n != 3 {
		t.Fatalf("%d data file reads, want 3: the recently used page was evicted", n)
	}
	read(15000) // page 1 was evicted: read again
	if n := cl.total(); n != 4 {
		t.Fatalf("%d data file reads, want 4", n)
	}
	if b := h.CachedBytes(); b <= 0 || b > 70000*64 {
		t.Errorf("cache holds %d bytes, bound %d", b, 70000*64)
	}
}

// TestPruningReadsOnlyTheFilesARangeMeets: a lake of many small files (as a
// live collector writes them: one silver file an epoch, gold partitioned by
// device) — a minute of one device reads the one silver file and the one
// gold file that can hold it, again after the statistics were parsed once,
// and files written later are pruned as well.
func TestPruningReadsOnlyTheFilesARangeMeets(t *testing.T) {
	ctx := context.Background()
	mem := lake.NewMemory()
	w := laketest.NewWriter(t, mem)
	t0 := time.Unix(1_790_000_000, 0)
	devs := []string{"dev-a", "dev-b", "dev-c"}
	epoch := func(e int) { // one file of 10 s of every device, gold one file per device
		var silver []schema.SilverRow
		var gold []schema.GoldRow
		for s := e * 10; s < e*10+10; s++ {
			ws := t0.Add(time.Duration(s) * time.Second).UnixMicro()
			for _, d := range devs {
				silver = append(silver, sqltest.Silver(d, ws, float64(s), 40, 101000))
				gold = append(gold, sqltest.Gold(d, ws, 8, float64(s), 40, 101000))
			}
		}
		w.Silver(silver...)
		w.Gold(gold...)
	}
	for e := range 30 {
		epoch(e)
	}
	cl := &countingLake{Lake: mem, gets: map[string]int{}}
	h := history.NewLake(cl, 8)
	read := func(fromS, toS int, wantFiles int) {
		t.Helper()
		before := cl.total()
		from, to := t0.Add(time.Duration(fromS)*time.Second), t0.Add(time.Duration(toS)*time.Second)
		got, err := h.Series(ctx, history.Query{Device: "dev-b", FromMS: from.UnixMilli(), ToMS: to.UnixMilli(), MaxPoints: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Silver.Len() != toS-fromS || got[0].Gold.Len() != toS-fromS || got[0].Silver.TempC[0] != float64(fromS) {
			t.Fatalf("[%d, %d) s: got %+v", fromS, toS, got)
		}
		if n := cl.total() - before; n != wantFiles {
			t.Fatalf("[%d, %d) s of dev-b read %d data files, want %d", fromS, toS, n, wantFiles)
		}
	}
	read(101, 108, 2) // epoch 10: its silver file and dev-b's gold file
	read(201, 209, 2) // epoch 20
	read(101, 108, 0) // cached
	epoch(30)
	epoch(31)
	time.Sleep(600 * time.Millisecond) // the Lake replays the log at most every 0.5 s
	read(305, 315, 4)                  // epochs 30 and 31: two silver files, two gold files of dev-b
}
