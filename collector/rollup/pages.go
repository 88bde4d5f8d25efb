package rollup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
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
	col := -1
	for i, c := range pf.Schema().Columns() {
		if len(c) == 1 && c[0] == "window_start" {
			col = i
		}
	}
	var out []page
	var base int64
	for _, rg := range pf.RowGroups() {
		n := rg.NumRows()
		whole := page{first: base, n: n, min: math.MinInt64, max: math.MaxInt64}
		base += n
		if col < 0 || col >= len(rg.ColumnChunks()) {
			out = append(out, whole)
			continue
		}
		cc := rg.ColumnChunks()[col]
		ci, err1 := cc.ColumnIndex()
		oi, err2 := cc.OffsetIndex()
		if err1 != nil || err2 != nil || ci == nil || oi == nil || ci.NumPages() != oi.NumPages() || ci.NumPages() == 0 {
			out = append(out, whole)
			continue
		}
		for p := 0; p < oi.NumPages(); p++ {
			first, last := oi.FirstRowIndex(p), n
			if p+1 < oi.NumPages() {
				last = oi.FirstRowIndex(p + 1)
			}
			if first < 0 || last > n || last < first {
				return []page{{first: 0, n: base, min: math.MinInt64, max: math.MaxInt64}}
			}
			pg := page{first: whole.first + first, n: last - first, min: math.MinInt64, max: math.MaxInt64}
			if !ci.NullPage(p) {
				if v := ci.MinValue(p); v.Kind() == parquet.Int64 {
					pg.min = v.Int64()
				}
				if v := ci.MaxValue(p); v.Kind() == parquet.Int64 {
					pg.max = v.Int64()
				}
			}
			out = append(out, pg)
		}
	}
	return out
}
