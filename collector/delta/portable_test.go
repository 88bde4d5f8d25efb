package delta_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/pilake/pilake/collector/delta"
)

// TestCheckPortable checks that the checker passes what pilake writes and
// fails on what some engines cannot read: DataPageV2 pages and
// BYTE_STREAM_SPLIT columns.
func TestCheckPortable(t *testing.T) {
	type row struct {
		A float64 `parquet:"a"`
		B int64   `parquet:"b"`
		S string  `parquet:"s,optional"`
	}
	rows := []row{{1.5, 2, "x"}, {2.5, 3, ""}, {3.5, 4, "x"}}
	write := func(opts ...parquet.WriterOption) []byte {
		var buf bytes.Buffer
		w := parquet.NewGenericWriter[row](&buf, opts...)
		if _, err := w.Write(rows); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	for name, opts := range map[string][]parquet.WriterOption{
		"v2 pages":          {parquet.DataPageVersion(2)},
		"byte stream split": {parquet.DataPageVersion(1), parquet.DefaultEncodingFor(parquet.Double, &parquet.ByteStreamSplit)},
		"delta byte array":  {parquet.DataPageVersion(1), parquet.DefaultEncodingFor(parquet.ByteArray, &parquet.DeltaByteArray)},
	} {
		if err := delta.CheckPortable(write(opts...)); !errors.Is(err, delta.ErrNotPortable) {
			t.Errorf("%s: CheckPortable = %v, want ErrNotPortable", name, err)
		}
	}
	if err := delta.CheckPortable(write(delta.WriterOptions(nil)...)); err != nil {
		t.Errorf("pilake's writer options: %v", err)
	}
	data, _, err := delta.EncodeParquet(rows, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := delta.CheckPortable(data); err != nil {
		t.Errorf("EncodeParquet: %v", err)
	}
	if err := delta.CheckPortable(data[:len(data)/2]); err == nil {
		t.Error("a truncated file passed")
	}
}
