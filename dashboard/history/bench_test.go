package history_test

import (
	"context"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/dashboard/history"
	"github.com/pilake/pilake/dashboard/internal/laketest"
	"github.com/pilake/pilake/dashboard/internal/sqltest"
)

// BenchmarkLakeSeries24h: a 24 h page of 3 devices (1 s windows: 86 400
// silver and 86 400 gold rows each, in hourly files), decimated to 1500
// points per series. The first read fills the file cache; the loop measures
// what a reload costs after that.
func BenchmarkLakeSeries24h(b *testing.B) {
	l, err := lake.NewLocal(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	w := laketest.NewWriter(b, l)
	end := time.Now().Truncate(time.Hour)
	start := end.Add(-24 * time.Hour)
	devs := []string{"dev-a", "dev-b", "dev-c"}
	for h := start; h.Before(end); h = h.Add(time.Hour) {
		var silver []schema.SilverRow
		var gold []schema.GoldRow
		for _, d := range devs {
			for s := 0; s < 3600; s++ {
				ws := h.Add(time.Duration(s) * time.Second).UnixMicro()
				silver = append(silver, sqltest.Silver(d, ws, 20+float64(s%100)/100, 40, 101000))
				gold = append(gold, sqltest.Gold(d, ws, 8, 20, 40, 101000))
			}
		}
		w.Silver(silver...)
		w.Gold(gold...)
	}
	src := history.NewLake(l, 8)
	q := history.Query{FromMS: start.UnixMilli(), ToMS: end.UnixMilli(), MaxPoints: 1500}
	cold := time.Now()
	if _, err := src.Series(context.Background(), q); err != nil {
		b.Fatal(err)
	}
	b.Logf("first read (fills the cache): %v", time.Since(cold))
	b.ReportAllocs()
	points := 0
	for b.Loop() {
		got, err := src.Series(context.Background(), q)
		if err != nil {
			b.Fatal(err)
		}
		points = 0
		for _, s := range got {
			points += s.Silver.Len() + s.Gold.Len()
		}
	}
	b.ReportMetric(float64(points), "points")
	b.ReportMetric(float64(len(devs)*2*86400), "rows")
}
