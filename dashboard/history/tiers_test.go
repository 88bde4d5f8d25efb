package history_test

import (
	"context"
	"math"
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
