package stages

import (
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

// writeGold writes the staged gold rows as one file per device (the table is
// partitioned by device), several at a time, and returns their add actions
// in device order.
func (c *committer) writeGold(ctx context.Context) ([]delta.AddFile, error) {
	byDev := map[string][]schema.GoldRow{}
	for _, g := range c.goldRows {
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
