package delta

import (
	"math"

	"github.com/parquet-go/parquet-go"
)

// PageRange is a run of rows of a Parquet file and the least and greatest
// value of one INT64 column over them (math.MinInt64 and math.MaxInt64
// when unknown).
type PageRange struct{ First, N, Min, Max int64 }

// PageRanges returns the runs of rows of the pages of the top-level INT64
// column (e.g. window_start) with their min and max from the file's page
// index: what a reader needs to decode only the pages a range touches.
// A row group without a usable index is one unbounded run; an index that
// does not add up makes the whole file one unbounded run.
func PageRanges(pf *parquet.File, column string) []PageRange {
	col := -1
	for i, c := range pf.Schema().Columns() {
		if len(c) == 1 && c[0] == column {
			col = i
		}
	}
	var out []PageRange
	var base int64
	for _, rg := range pf.RowGroups() {
		n := rg.NumRows()
		whole := PageRange{First: base, N: n, Min: math.MinInt64, Max: math.MaxInt64}
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
				return []PageRange{{First: 0, N: pf.NumRows(), Min: math.MinInt64, Max: math.MaxInt64}}
			}
			pr := PageRange{First: whole.First + first, N: last - first, Min: math.MinInt64, Max: math.MaxInt64}
			if !ci.NullPage(p) {
				if v := ci.MinValue(p); v.Kind() == parquet.Int64 {
					pr.Min = v.Int64()
				}
				if v := ci.MaxValue(p); v.Kind() == parquet.Int64 {
					pr.Max = v.Int64()
				}
			}
			out = append(out, pr)
		}
	}
	return out
}
