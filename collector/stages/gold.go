package stages

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	"github.com/parquet-go/parquet-go"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// writeGold writes gold rows as one file, in window_start, device, n order
// (clustered by time, so readers prune files by their statistics and pages
// by the page index), or, on a lake whose gold is partitioned by device, as
// one file per device, several at a time; it returns the add actions (in
// device order).
func (c *committer) writeGold(ctx context.Context, rows []schema.GoldRow) ([]delta.AddFile, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	if !c.goldPartitioned {
		rows = slices.Clone(rows)
		slices.SortStableFunc(rows, func(a, b schema.GoldRow) int {
			return cmp.Or(cmp.Compare(a.WindowStart, b.WindowStart), cmp.Compare(a.Device, b.Device), cmp.Compare(a.N, b.N))
		})
		add, err := delta.WriteFile(ctx, c.tables[schema.Gold], rows, nil)
		if err != nil {
			return nil, fmt.Errorf("writing gold: %w", err)
		}
		return []delta.AddFile{add}, nil
	}
	byDev := map[string][]schema.GoldRow{}
	for _, g := range rows {
		byDev[g.Device] = append(byDev[g.Device], g)
	}
	devs := slices.Sorted(maps.Keys(byDev))
	adds := make([]delta.AddFile, len(devs))
	errs := make([]error, len(devs))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	t := c.tables[schema.Gold]
	for i, dev := range devs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			adds[i], errs[i] = delta.WriteFile(ctx, t, byDev[dev], map[string]string{"device": dev})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("writing gold: %w", err)
	}
	return adds, nil
}

func readStaged(ctx context.Context, l lake.Lake, name string) (_ []schema.GoldRow, err error) {
	data, err := l.Get(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("reading staged gold: %w", err)
	}
	defer func() { // parquet-go may panic on a corrupt file
		if r := recover(); r != nil {
			err = fmt.Errorf("reading staged gold %s: %w: %v", name, errState, r)
		}
	}()
	f, err := delta.OpenParquet(data)
	if err != nil {
		return nil, fmt.Errorf("reading staged gold %s: %w", name, err)
	}
	rows := make([]schema.GoldRow, 0, 1024)
	r := parquet.NewGenericReader[schema.GoldRow](f)
	defer r.Close()
	buf := make([]schema.GoldRow, 1024)
	for {
		n, err := r.Read(buf)
		rows = append(rows, buf[:n]...)
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading staged gold %s: %w: %v", name, errState, err)
		}
		if n == 0 {
			return nil, fmt.Errorf("reading staged gold %s: %w: no progress", name, errState)
		}
	}
}
