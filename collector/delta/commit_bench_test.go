package delta_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// BenchmarkCommit: one append commit (an add action with statistics and a
// txn, as the stages' commits carry) to a table of 2,000 live files, in
// memory (the commit's CPU and allocations) and on a local disk (with the
// lake's fsyncs). No checkpoints: those have their own benchmark.
func BenchmarkCommit(b *testing.B) {
	for _, kind := range []string{"memory", "local"} {
		b.Run("lake="+kind, func(b *testing.B) {
			ctx := b.Context()
			var l lake.Lake = lake.NewMemory()
			if kind == "local" {
				loc, err := lake.NewLocal(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				l = loc
			}
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			tb, err := delta.Open[schema.SilverRow](ctx, l, "t", delta.Options{Now: func() time.Time { return now }, CheckpointInterval: 1 << 30})
			if err != nil {
				b.Fatal(err)
			}
			stats := `{"numRecords":400,"minValues":{"device":"dev-00001","window_start":1767225600000000},` +
				`"maxValues":{"device":"dev-00999","window_start":1767225601000000},"nullCount":{"device":0,"window_start":0}}`
			add := func(i int) delta.Action {
				return delta.Action{Add: &delta.AddFile{Path: fmt.Sprintf("part-%08d.parquet", i), PartitionValues: map[string]string{},
					Size: 40_000 + int64(i%1000), ModificationTime: now.UnixMilli(), DataChange: true, Stats: stats}}
			}
			var actions []delta.Action
			for i := range 2000 {
				actions = append(actions, add(i))
			}
			if _, err := tb.Commit(ctx, actions, "WRITE"); err != nil {
				b.Fatal(err)
			}
			i := 2000
			b.ReportAllocs()
			for b.Loop() {
				i++
				txn := delta.Action{Txn: &delta.Txn{AppID: "pilake-stages", Version: int64(i), LastUpdated: now.UnixMilli()}}
				if _, err := tb.Commit(ctx, []delta.Action{add(i), txn}, "STREAMING UPDATE"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
