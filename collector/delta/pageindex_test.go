package delta

import (
	"bytes"
	"math"
	"testing"

	"github.com/parquet-go/parquet-go"
)

func TestPageRanges(t *testing.T) {
	type row struct {
		WindowStart int64 `parquet:"window_start"`
		V           int64 `parquet:"v"`
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[row](&buf, parquet.PageBufferSize(256), parquet.MaxRowsPerRowGroup(1000))
	rows := make([]row, 2500)
	for i := range rows {
		rows[i] = row{WindowStart: int64(i) * 10, V: int64(i)}
	}
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	pf, err := parquet.OpenFile(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	prs := PageRanges(pf, "window_start")
	if len(prs) <= 3 {
		t.Fatalf("%d ranges: want pages, not just the 3 row groups", len(prs))
	}
	var next int64
	for _, r := range prs {
		if r.First != next || r.N <= 0 {
			t.Fatalf("range %+v does not follow row %d", r, next)
		}
		if r.Min != r.First*10 || r.Max != (r.First+r.N-1)*10 {
			t.Fatalf("range %+v: min/max %d/%d, want %d/%d", r, r.Min, r.Max, r.First*10, (r.First+r.N-1)*10)
		}
		next += r.N
	}
	if next != 2500 {
		t.Fatalf("ranges cover %d rows, want 2500", next)
	}
	// A column that is not in the file: each row group is one unbounded run.
	prs = PageRanges(pf, "nope")
	if len(prs) != 3 || prs[2].First != 2000 || prs[2].N != 500 || prs[0].Min != math.MinInt64 || prs[0].Max != math.MaxInt64 {
		t.Fatalf("without the column: %+v", prs)
	}
}
