package delta_test

import (
	"context"
	"fmt"
	"os"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// Write a Delta table and read it back by replaying its log.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "lake")
	defer os.RemoveAll(dir)
	l, _ := lake.NewLocal(dir)

	t, err := delta.Open[schema.SilverRow](ctx, l, schema.Silver, delta.Options{})
	if err != nil {
		panic(err)
	}
	rows := []schema.SilverRow{{Device: "pi-1", WindowStart: 1_767_225_600_000_000, WindowEnd: 1_767_225_601_000_000, Count: 400, TempAvg: 21.5}}
	add, err := delta.WriteFile(ctx, t, rows, nil)
	if err != nil {
		panic(err)
	}
	if _, err := t.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
		panic(err)
	}

	got, err := delta.ReadTable[schema.SilverRow](ctx, l, schema.Silver, func(f delta.AddFile) bool {
		st, err := f.ParsedStats()
		return err != nil || st.NumRecords > 0 // skip files by their statistics
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(len(got), got[0].Device, got[0].Count, got[0].TempAvg)
	// Output: 1 pi-1 400 21.5
}
