package rollup_test

import (
	"context"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/rollup"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/schema/schematest"
)

const sec = int64(1e6)

func silverRow(r *rand.Rand, dev string, ws int64) schema.SilverRow {
	t := 20 + r.Float64()*5
	h := 40 + r.Float64()*10
	p := 101000 + r.Float64()*500
	c := int64(r.IntN(400))
	row := schema.SilverRow{Device: dev, WindowStart: ws, WindowEnd: ws + sec, Count: c, FreshCount: c / 4,
		TempAvg: t, TempMin: t - r.Float64(), TempMax: t + r.Float64(),
		HumidityAvg: schema.Float(h), HumidityMin: schema.Float(h - r.Float64()), HumidityMax: schema.Float(h + r.Float64()),
		PressureAvg: schema.Float(p), PressureMin: schema.Float(p - r.Float64()*10), PressureMax: schema.Float(p + r.Float64()*10)}
	switch dev {
	case "dev-b": // no pressure (the Azure simulator's)
		row.PressureAvg, row.PressureMin, row.PressureMax = nil, nil, nil
	case "dev-c": // no humidity (a BMP280) in the first hour
		if ws%(2*3600*sec) < 3600*sec {
			row.HumidityAvg, row.HumidityMin, row.HumidityMax = nil, nil, nil
		}
	}
	return row
}

// fv is a nullable value, NaN for null.
func fv(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// nanMin and nanMax ignore a NaN (no value) operand.
func nanMin(a, b float64) float64 {
	if math.IsNaN(a) {
		return b
	}
	if math.IsNaN(b) {
		return a
	}
	return math.Min(a, b)
}

func nanMax(a, b float64) float64 {
	if math.IsNaN(a) {
		return b
	}
	if math.IsNaN(b) {
		return a
	}
	return math.Max(a, b)
}

// same3 compares per quantity, NaN (no value) equal to NaN.
func same3(a, b [3]float64) bool {
	for i := range a {
		if a[i] != b[i] && !(math.IsNaN(a[i]) && math.IsNaN(b[i])) {
			return false
		}
	}
	return true
}

type combined struct {
	count, fresh  int64
	min, max, sum [3]float64
	rows          int
}

func combine(rows []schema.SilverRow, width int64, before int64) map[[2]int64]map[string]*combined {
	_ = width
	out := map[[2]int64]map[string]*combined{}
	for _, x := range rows {
		b := x.WindowStart / width * width
		if b+width > before {
			continue
		}
		k := [2]int64{b, 0}
		if out[k] == nil {
			out[k] = map[string]*combined{}
		}
		c := out[k][x.Device]
		v := [3]float64{x.TempAvg, fv(x.HumidityAvg), fv(x.PressureAvg)}
		lo := [3]float64{x.TempMin, fv(x.HumidityMin), fv(x.PressureMin)}
		hi := [3]float64{x.TempMax, fv(x.HumidityMax), fv(x.PressureMax)}
		if c == nil {
			c = &combined{min: lo, max: hi}
			out[k][x.Device] = c
		}
		c.rows++
		c.count += x.Count
		c.fresh += x.FreshCount
		for i := range 3 {
			if math.IsNaN(v[i]) {
				continue // no value: not in the aggregate
			}
			c.sum[i] += v[i] * float64(x.Count)
			c.min[i] = nanMin(c.min[i], lo[i])
			c.max[i] = nanMax(c.max[i], hi[i])
		}
	}
	return out
}

// TestTiersMatchSilver: silver committed in epochs, with a device replaying
// an old stretch after the tiers passed it; every tier's rows, combined per
// bucket, equal the aggregate of the silver rows behind them: counts, min
// and max exactly, the mean to float rounding.
func TestTiersMatchSilver(t *testing.T) {
	ctx := context.Background()
	l := lake.NewMemory()
	silver, err := delta.Open[schema.SilverRow](ctx, l, schema.Silver, delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	t0 := int64(1_790_000_000) * sec / (3600 * sec) * (3600 * sec) // an hour boundary
	roller := rollup.New(l, rollup.Options{Grace: 30 * time.Second, CompactEvery: 5})
	var all []schema.SilverRow
	commit := func(rows []schema.SilverRow) {
		t.Helper()
		if len(rows) == 0 {
			return
		}
		add, err := delta.WriteFile(ctx, silver, rows, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := silver.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
		all = append(all, rows...)
		if _, err := roller.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	devs := []string{"dev-a", "dev-b", "dev-c"}
	const span = 2*3600 + 300                // seconds of windows
	gapFrom, gapTo := int64(605), int64(695) // dev-c's outage: replayed at the end
	for s := int64(0); s < span; s += 120 {
		var rows []schema.SilverRow
		for _, d := range devs {
			for k := s; k < s+120; k++ {
				if d == "dev-c" && k >= gapFrom && k < gapTo {
					continue
				}
				if d == "dev-b" && k%97 == 0 {
					continue // a missing window
				}
				rows = append(rows, silverRow(r, d, t0+k*sec))
			}
		}
		commit(rows)
		if s == 1800 { // the spool replay, long after its buckets were written
			var late []schema.SilverRow
			for k := gapFrom; k < gapTo; k++ {
				late = append(late, silverRow(r, "dev-c", t0+k*sec))
			}
			commit(late)
		}
	}
	// A restarted roller resumes from the lake's txns and writes nothing twice.
	roller = rollup.New(l, rollup.Options{Grace: 30 * time.Second})
	if _, err := roller.Step(ctx); err != nil {
		t.Fatal(err)
	}
	commit([]schema.SilverRow{silverRow(r, "dev-a", t0+span*sec+40*sec)})

	for _, tier := range rollup.DefaultTiers() {
		t.Run(tier.Table, func(t *testing.T) {
			snap, err := delta.Load(ctx, l, tier.Table)
			if err != nil {
				t.Fatal(err)
			}
			frontier, ok := rollup.Frontier(snap)
			if !ok {
				t.Fatal("no frontier")
			}
			// Buckets close once their end is Grace behind the newest
			// window: the frontier can never pass the newest window's end.
			var newest int64
			for _, x := range all {
				newest = max(newest, x.WindowEnd)
			}
			if frontier > newest || frontier < t0 {
				t.Fatalf("frontier %d outside the data (%d .. %d)", frontier, t0, newest)
			}
			rows, err := delta.ReadFiles[schema.SilverRow](ctx, l, tier.Table, snap.Files(), nil)
			if err != nil {
				t.Fatal(err)
			}
			w := tier.Width.Microseconds()
			want := combine(all, w, frontier)
			got := map[[2]int64]map[string]*combined{}
			for _, x := range rows {
				if x.WindowEnd-x.WindowStart != w || x.WindowStart%w != 0 {
					t.Fatalf("row %+v is not a %v bucket", x, tier.Width)
				}
				if x.WindowEnd > frontier {
					t.Errorf("row %+v beyond the frontier %d", x, frontier)
				}
			}
			got = combineTier(rows, w)
			if len(want) == 0 || len(got) != len(want) {
				t.Fatalf("%d buckets, want %d (frontier %v)", len(got), len(want), time.Duration(frontier-t0)*time.Microsecond)
			}
			multi := 0
			for k, devs := range want {
				for d, wc := range devs {
					gc := got[k][d]
					if gc == nil {
						t.Fatalf("bucket %v of %s missing", k, d)
					}
					if gc.rows > 1 {
						multi++
					}
					if gc.count != wc.count || gc.fresh != wc.fresh || !same3(gc.min, wc.min) || !same3(gc.max, wc.max) {
						t.Fatalf("bucket %v of %s: got %+v want %+v", k, d, gc, wc)
					}
					for i := range 3 {
						if math.Abs(gc.sum[i]-wc.sum[i]) > 1e-9*math.Abs(wc.sum[i]) {
							t.Fatalf("bucket %v of %s: weighted sum %v want %v", k, d, gc.sum[i], wc.sum[i])
						}
					}
				}
			}
			if tier.Table == schema.Silver10s && multi == 0 {
				t.Error("the replayed stretch made no correction rows")
			}
		})
	}
}

func combineTier(rows []schema.SilverRow, w int64) map[[2]int64]map[string]*combined {
	out := map[[2]int64]map[string]*combined{}
	for _, x := range rows {
		k := [2]int64{x.WindowStart, 0}
		if out[k] == nil {
			out[k] = map[string]*combined{}
		}
		c := out[k][x.Device]
		lo := [3]float64{x.TempMin, fv(x.HumidityMin), fv(x.PressureMin)}
		hi := [3]float64{x.TempMax, fv(x.HumidityMax), fv(x.PressureMax)}
		v := [3]float64{x.TempAvg, fv(x.HumidityAvg), fv(x.PressureAvg)}
		if c == nil {
			c = &combined{min: lo, max: hi}
			out[k][x.Device] = c
		}
		c.rows++
		c.count += x.Count
		c.fresh += x.FreshCount
		for i := range 3 {
			if math.IsNaN(v[i]) {
				continue // no value: not in the aggregate
			}
			c.sum[i] += v[i] * float64(x.Count)
			c.min[i] = nanMin(c.min[i], lo[i])
			c.max[i] = nanMax(c.max[i], hi[i])
		}
	}
	return out
}

// TestAggregateExact: one bucket's row from silver rows in any order.
func TestAggregateExact(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var rows []schema.SilverRow
	for k := int64(0); k < 60; k++ {
		rows = append(rows, silverRow(r, "d", k*sec))
	}
	a := rollup.Aggregate(rows, 60*sec)
	r.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	b := rollup.Aggregate(rows, 60*sec)
	if len(a) != 1 || !reflect.DeepEqual(a[0], b[0]) {
		t.Fatalf("%+v vs %+v", a, b)
	}
	var n int64
	mn, mx := math.Inf(1), math.Inf(-1)
	for _, x := range rows {
		n += x.Count
		mn, mx = math.Min(mn, x.TempMin), math.Max(mx, x.TempMax)
	}
	if a[0].Count != n || a[0].TempMin != mn || a[0].TempMax != mx || a[0].WindowEnd != 60*sec {
		t.Errorf("%+v", a[0])
	}
}

// TestAggregateNulls: humidity and pressure aggregate over the rows that
// have them; a bucket where none has one has none (null), and its count
// and temperature are still every row's.
func TestAggregateNulls(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var rows []schema.SilverRow
	for k := int64(0); k < 120; k++ {
		x := silverRow(r, "d", k*sec)
		x.PressureAvg, x.PressureMin, x.PressureMax = nil, nil, nil // none has pressure
		if k%60 >= 30 {
			x.HumidityAvg, x.HumidityMin, x.HumidityMax = nil, nil, nil // half of each bucket has humidity
		}
		rows = append(rows, x)
	}
	out := rollup.Aggregate(rows, 60*sec)
	if len(out) != 2 {
		t.Fatalf("%d buckets", len(out))
	}
	for b, a := range out {
		var n int64
		var hs float64
		var hc int64
		hmin, hmax := math.Inf(1), math.Inf(-1)
		for _, x := range rows[b*60 : b*60+60] {
			n += x.Count
			if x.HumidityAvg != nil {
				hs += *x.HumidityAvg * float64(x.Count)
				hc += x.Count
				hmin, hmax = math.Min(hmin, *x.HumidityMin), math.Max(hmax, *x.HumidityMax)
			}
		}
		if a.Count != n || a.PressureAvg != nil || a.PressureMin != nil || a.PressureMax != nil {
			t.Fatalf("bucket %d: count %d (want %d), pressure %v %v %v (want null)", b, a.Count, n, a.PressureAvg, a.PressureMin, a.PressureMax)
		}
		if a.HumidityAvg == nil || math.Abs(*a.HumidityAvg-hs/float64(hc)) > 1e-9 || *a.HumidityMin != hmin || *a.HumidityMax != hmax {
			t.Fatalf("bucket %d: humidity %v %v %v, want %v %v %v", b, fv(a.HumidityAvg), fv(a.HumidityMin), fv(a.HumidityMax), hs/float64(hc), hmin, hmax)
		}
	}
}

// TestLargeFilePages: one silver file of many Parquet pages (120 000
// windows); the tiers read it page by page and still hold every window.
func TestLargeFilePages(t *testing.T) {
	ctx := context.Background()
	l := lake.NewMemory()
	silver, err := delta.Open[schema.SilverRow](ctx, l, schema.Silver, delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	t0 := int64(1_790_000_000) * sec / (3600 * sec) * (3600 * sec)
	var rows []schema.SilverRow
	for k := int64(0); k < 40000; k++ {
		for _, d := range []string{"dev-a", "dev-b", "dev-c"} {
			rows = append(rows, silverRow(r, d, t0+k*sec))
		}
	}
	add, err := delta.WriteFile(ctx, silver, rows, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := silver.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
		t.Fatal(err)
	}
	roller := rollup.New(l, rollup.Options{Grace: 30 * time.Second, Tiers: rollup.DefaultTiers()[:1]})
	if _, err := roller.Step(ctx); err != nil {
		t.Fatal(err)
	}
	snap, err := delta.Load(ctx, l, schema.Silver10s)
	if err != nil {
		t.Fatal(err)
	}
	frontier, _ := rollup.Frontier(snap)
	got, err := delta.ReadFiles[schema.SilverRow](ctx, l, schema.Silver10s, snap.Files(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := combine(rows, 10*sec, frontier)
	if n := len(combineTier(got, 10*sec)); n != len(want) || n < 3900 {
		t.Fatalf("%d buckets, want %d", n, len(want))
	}
	var count, wantCount int64
	for _, x := range got {
		count += x.Count
	}
	for _, devs := range want {
		for _, c := range devs {
			wantCount += c.count
		}
	}
	if count != wantCount {
		t.Errorf("readings %d, want %d", count, wantCount)
	}
}

// TestTiersOverOldAndNullSilver: silver files from before (required
// columns) and new ones with null pressure roll up together; a bucket
// whose windows have no pressure has none, the others average theirs.
func TestTiersOverOldAndNullSilver(t *testing.T) {
	ctx := context.Background()
	l := lake.NewMemory()
	t0 := int64(1_790_000_000) * sec / (3600 * sec) * (3600 * sec)
	old, err := delta.Open[schematest.SilverV1](ctx, l, schema.Silver, delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var orows []schematest.SilverV1
	for k := int64(0); k < 60; k++ { // the first minute: written before
		orows = append(orows, schematest.SilverV1{Device: "d", WindowStart: t0 + k*sec, WindowEnd: t0 + (k+1)*sec, Count: 10,
			TempAvg: 20, TempMin: 19, TempMax: 21, PressureAvg: 101000, PressureMin: 100990, PressureMax: 101010, HumidityAvg: 40, HumidityMin: 39, HumidityMax: 41})
	}
	add, err := delta.WriteFile(ctx, old, orows, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
		t.Fatal(err)
	}
	silver, err := delta.Open[schema.SilverRow](ctx, l, schema.Silver, delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var rows []schema.SilverRow
	for k := int64(60); k < 300; k++ { // then the simulator: no pressure
		rows = append(rows, schema.SilverRow{Device: "d", WindowStart: t0 + k*sec, WindowEnd: t0 + (k+1)*sec, Count: 1,
			TempAvg: 22, TempMin: 22, TempMax: 22, HumidityAvg: schema.Float(50), HumidityMin: schema.Float(50), HumidityMax: schema.Float(50)})
	}
	add, err = delta.WriteFile(ctx, silver, rows, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := silver.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
		t.Fatal(err)
	}
	roller := rollup.New(l, rollup.Options{Grace: 30 * time.Second, Tiers: rollup.DefaultTiers()[:2]})
	if _, err := roller.Step(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := delta.ReadTable[schema.SilverRow](ctx, l, schema.Silver1m, nil)
	if err != nil {
		t.Fatal(err)
	}
	byMin := map[int64]schema.SilverRow{}
	for _, x := range got {
		byMin[(x.WindowStart-t0)/(60*sec)] = x
	}
	first, second := byMin[0], byMin[1]
	if first.Count != 600 || first.PressureAvg == nil || *first.PressureAvg != 101000 || *first.PressureMin != 100990 || *first.HumidityAvg != 40 {
		t.Errorf("the minute written before: %+v", first)
	}
	if second.Count != 60 || second.PressureAvg != nil || second.PressureMin != nil || second.HumidityAvg == nil || *second.HumidityAvg != 50 || second.TempAvg != 22 {
		t.Errorf("a minute without pressure: %+v", second)
	}
}

// TestCorrectionsInTheirOwnFile: a pass that closes new buckets and
// corrects buckets written before writes the two in separate files, so the
// new buckets' rows are compacted with their own day and not stranded with
// the corrections in a file of a day already compacted.
func TestCorrectionsInTheirOwnFile(t *testing.T) {
	ctx := t.Context()
	l := lake.NewMemory()
	silver, err := delta.Open[schema.SilverRow](ctx, l, schema.Silver, delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	t0 := int64(1_790_000_000) * sec / (3600 * sec) * (3600 * sec)
	commit := func(dev string, from, to int64) {
		t.Helper()
		var rows []schema.SilverRow
		for k := from; k < to; k++ {
			rows = append(rows, silverRow(r, dev, t0+k*sec))
		}
		add, err := delta.WriteFile(ctx, silver, rows, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := silver.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
	}
	roller := rollup.New(l, rollup.Options{Grace: 30 * time.Second, Tiers: []rollup.Tier{{Table: schema.Silver10s, Source: schema.Silver, Width: 10 * time.Second}}})
	commit("dev-a", 0, 120)
	if _, err := roller.Step(ctx); err != nil {
		t.Fatal(err)
	}
	before, ok := roller.Frontier(schema.Silver10s)
	if !ok {
		t.Fatal("no frontier after the first pass")
	}
	tier, err := delta.Load(ctx, l, schema.Silver10s)
	if err != nil {
		t.Fatal(err)
	}
	commit("dev-b", 0, 20)    // late: buckets written already
	commit("dev-a", 120, 240) // new buckets
	if _, err := roller.Step(ctx); err != nil {
		t.Fatal(err)
	}
	commits, err := tier.Update(ctx, l, schema.Silver10s)
	if err != nil {
		t.Fatal(err)
	}
	var newFiles, corrections int
	for _, c := range commits {
		for _, a := range c {
			if a.Add == nil {
				continue
			}
			st, err := a.Add.ParsedStats()
			if err != nil {
				t.Fatal(err)
			}
			lo, err1 := delta.ParseStatsTime(st.MinValues["window_start"])
			hi, err2 := delta.ParseStatsTime(st.MaxValues["window_start"])
			if err1 != nil || err2 != nil {
				t.Fatalf("window_start statistics of %s: %v %v", a.Add.Path, err1, err2)
			}
			switch {
			case lo >= before:
				newFiles++
			case hi < before:
				corrections++
			default:
				t.Fatalf("a file holds buckets from %v before the frontier to %v after it", time.Duration(before-lo)*time.Microsecond, time.Duration(hi-before)*time.Microsecond)
			}
		}
	}
	if newFiles != 1 || corrections != 1 {
		t.Fatalf("the pass wrote %d files of new buckets and %d of corrections, want 1 and 1", newFiles, corrections)
	}
}
