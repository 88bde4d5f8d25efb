package delta

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/parquet-go/parquet-go"
)

// EncodeParquet writes rows as one Parquet file without the partition
// columns, compressed with codec (nil: DefaultCompression), and returns its
// bytes and Delta statistics.
func EncodeParquet[T any](rows []T, partitionColumns []string, codec parquet.WriterOption) ([]byte, Stats, error) {
	ps, err := dataSchema[T](partitionColumns)
	if err != nil {
		return nil, Stats{}, fmt.Errorf("encoding parquet: %w", err)
	}
	ds, err := deltaSchema(ps)
	if err != nil {
		return nil, Stats{}, fmt.Errorf("encoding parquet: %w", err)
	}
	var buf bytes.Buffer
	opts := append(WriterOptions(codec), ps)
	w := parquet.NewGenericWriter[T](&buf, opts...)
	if _, err := w.Write(rows); err != nil {
		return nil, Stats{}, fmt.Errorf("encoding parquet: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, Stats{}, fmt.Errorf("encoding parquet: %w", err)
	}
	st, err := FileStats(buf.Bytes(), ds)
	if err != nil {
		return nil, Stats{}, err
	}
	return buf.Bytes(), st, nil
}

// FileStats computes Delta statistics (numRecords, minValues, maxValues,
// nullCount) of a Parquet file from its footer's column chunk statistics.
func FileStats(data []byte, schema StructType) (_ Stats, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading parquet footer for stats: %w: %v", ErrCorruptFile, r)
		}
	}()
	f, err := OpenParquet(data, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return Stats{}, fmt.Errorf("reading parquet footer for stats: %w", err)
	}
	md := f.Metadata()
	st := Stats{NumRecords: md.NumRows, MinValues: map[string]any{}, MaxValues: map[string]any{}, NullCount: map[string]int64{}}
	type acc struct {
		min, max []byte
		ok       bool
	}
	accs := map[string]*acc{}
	for _, rg := range md.RowGroups {
		for _, cc := range rg.Columns {
			if len(cc.MetaData.PathInSchema) != 1 {
				continue
			}
			name := cc.MetaData.PathInSchema[0]
			fld, ok := schema.Field(name)
			if !ok {
				continue
			}
			s := cc.MetaData.Statistics
			st.NullCount[name] += s.NullCount
			if s.MinValue == nil || s.MaxValue == nil || fld.Type == "boolean" {
				continue
			}
			a := accs[name]
			if a == nil {
				a = &acc{}
				accs[name] = a
			}
			if !a.ok || compareStat(fld.Type, s.MinValue, a.min) < 0 {
				a.min = s.MinValue
			}
			if !a.ok || compareStat(fld.Type, s.MaxValue, a.max) > 0 {
				a.max = s.MaxValue
			}
			a.ok = true
		}
	}
	for name, a := range accs {
		fld, _ := schema.Field(name)
		mn, ok1 := statValue(fld.Type, a.min)
		mx, ok2 := statValue(fld.Type, a.max)
		if ok1 && ok2 {
			st.MinValues[name] = mn
			st.MaxValues[name] = mx
		}
	}
	return st, nil
}

func decodeNum(typ string, b []byte) (float64, int64, bool) {
	switch typ {
	case "integer":
		if len(b) != 4 {
			return 0, 0, false
		}
		return 0, int64(int32(binary.LittleEndian.Uint32(b))), true
	case "long", "timestamp":
		if len(b) != 8 {
			return 0, 0, false
		}
		return 0, int64(binary.LittleEndian.Uint64(b)), true
	case "float":
		if len(b) != 4 {
			return 0, 0, false
		}
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b))), 0, true
	case "double":
		if len(b) != 8 {
			return 0, 0, false
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(b)), 0, true
	}
	return 0, 0, false
}

func compareStat(typ string, a, b []byte) int {
	switch typ {
	case "string":
		return bytes.Compare(a, b)
	case "float", "double":
		x, _, _ := decodeNum(typ, a)
		y, _, _ := decodeNum(typ, b)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	default:
		_, x, _ := decodeNum(typ, a)
		_, y, _ := decodeNum(typ, b)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	}
}

// statValue renders a plain-encoded Parquet statistic as the JSON value Delta
// expects: numbers, strings, and timestamps as "2006-01-02T15:04:05.000Z"
// truncated down to milliseconds.
func statValue(typ string, b []byte) (any, bool) {
	switch typ {
	case "string":
		return string(b), true
	case "float", "double":
		f, _, ok := decodeNum(typ, b)
		if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, false
		}
		return f, true
	case "timestamp":
		_, us, ok := decodeNum(typ, b)
		if !ok {
			return nil, false
		}
		return FormatStatsTime(us), true
	case "integer", "long":
		_, n, ok := decodeNum(typ, b)
		return n, ok
	}
	return nil, false
}

// FormatStatsTime renders microseconds since the epoch as a Delta timestamp
// statistic, truncated down to milliseconds.
func FormatStatsTime(us int64) string {
	ms := us / 1000
	if us < 0 && us%1000 != 0 {
		ms--
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}
