package rollup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/parquet-go/parquet-go"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// readRange returns the rows of source file f with window_start in
// [from, to), decoding only the Parquet pages whose window_start range
// (page index) meets it: a step of the 10 s tier reads the newest page or
// two of a compacted file of a million rows, not the file.
func readRange(ctx context.Context, l lake.Lake, table string, f delta.AddFile, from, to int64) (_ []schema.SilverRow, err error) {
	rel, err := delta.CanonicalPath(f.Path)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(rel, "/") || strings.Contains(rel, "://") {
		return nil, fmt.Errorf("reading %s: absolute data file path %q: %w", table, f.Path, delta.ErrUnsupported)
	}
	data, err := l.Get(ctx, table+"/"+rel)
	if err != nil {
		return nil, fmt.Errorf("reading data file of %s: %w", table, err)
	}
	defer func() { // parquet-go may panic on a corrupt file
		if r := recover(); r != nil {
			err = fmt.Errorf("reading data file %s of %s: %w: %v", f.Path, table, delta.ErrCorruptFile, r)
		}
	}()
	pf, err := delta.OpenParquet(data)
	if err != nil {
		return nil, fmt.Errorf("reading data file %s of %s: %w", f.Path, table, err)
	}
	r := parquet.NewGenericReader[schema.SilverRow](pf)
	defer r.Close()
	var out []schema.SilverRow
	buf := make([]schema.SilverRow, 1024)
	for _, sg := range pages(pf) {
		if sg.max < from || sg.min >= to {
			continue
		}
		if err := r.SeekToRow(sg.first); err != nil {
			return nil, fmt.Errorf("reading data file %s of %s: %w: %v", f.Path, table, delta.ErrCorruptFile, err)
		}
		for left := sg.n; left > 0; {
			k, err := r.Read(buf[:min(int64(len(buf)), left)])
			for _, x := range buf[:k] {
				if x.WindowStart >= from && x.WindowStart < to {
					out = append(out, x)
				}
			}
			left -= int64(k)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("reading data file %s of %s: %w: %v", f.Path, table, delta.ErrCorruptFile, err)
			}
			if k == 0 {
				return nil, fmt.Errorf("reading data file %s of %s: %w: no progress", f.Path, table, delta.ErrCorruptFile)
			}
		}
	}
	return out, nil
}

type page struct{ first, n, min, max int64 }

// pages returns the runs of rows of each window_start page (the whole row
// group, unbounded, when the file has no page index).
func pages(pf *parquet.File) []page {
	prs := delta.PageRanges(pf, "window_start")
	out := make([]page, len(prs))
	for i, r := range prs {
		out[i] = page{first: r.First, n: r.N, min: r.Min, max: r.Max}
	}
	return out
}
