package delta

import (
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"

	"github.com/RoaringBitmap/roaring/v2/roaring64"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// ErrInexact means a data file holds a column this package cannot convert
// exactly into the row type (a missing column, a null, a narrowing or lossy
// conversion, an unknown type): the read fails instead of returning a value.
var ErrInexact = errors.New("column not convertible exactly")

// readInfo is how a table's data files are read: its column mapping.
type readInfo struct {
	mode string            // "", "name" or "id" (delta.columnMapping.mode)
	phys map[string]string // logical column → physical name
	ids  map[string]int    // logical column → Parquet field id
}

// readInfo derives the snapshot's column mapping from its protocol and
// metadata; nil when files are read by column name.
func (s *Snapshot) readInfo() *readInfo {
	mode := s.Metadata.Configuration["delta.columnMapping.mode"]
	if mode != "name" && mode != "id" {
		return nil
	}
	schema, err := s.Schema()
	if err != nil {
		return nil
	}
	ri := &readInfo{mode: mode, phys: map[string]string{}, ids: map[string]int{}}
	for _, f := range schema.Fields {
		if p, ok := f.Metadata["delta.columnMapping.physicalName"].(string); ok && p != "" {
			ri.phys[f.Name] = p
		}
		if id, ok := f.Metadata["delta.columnMapping.id"].(float64); ok {
			ri.ids[f.Name] = int(id)
		}
	}
	return ri
}

// conv is how a file column's values become a row field's.
type conv int

const (
	convSame      conv = iota // the same type: as parquet-go reads it
	convInt96                 // INT96 (Julian day, nanoseconds) → µs; exact only for whole µs
	convMillis                // TIMESTAMP(MILLIS) → µs
	convNanos                 // TIMESTAMP(NANOS) → µs; exact only for whole µs
	convMicros                // TIMESTAMP(MICROS) not UTC-adjusted (timestamp_ntz) → µs
	convInt32To64             // INT32 → int64
	convFloatTo64             // FLOAT → float64
)

// colPlan reads one field of the row type.
type colPlan struct {
	name     string // the column's logical name
	field    []int  // reflect index in the row type
	kind     reflect.Kind
	col      int // leaf column index in the file
	conv     conv
	optional bool
	ptr      bool // the field is a pointer (a nullable column): a null leaves it nil
}

// filePlan is how one data file is read into rows of T.
type filePlan struct {
	cols []colPlan
	fast bool // parquet-go's GenericReader reads the file exactly
	// widen: not fast only because required columns fill pointer fields
	// (a file written before its column became nullable): read row by row,
	// the values are the same.
	widen bool
}

// rowField is a field of a row type: its column name and how to set it.
type rowField struct {
	name  string
	index []int
	kind  reflect.Kind // of the pointed-to type when ptr
	ts    bool
	ptr   bool
}

func rowFields(t reflect.Type) []rowField {
	var out []rowField
	if t.Kind() != reflect.Struct {
		return nil
	}
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() || f.Anonymous {
			continue
		}
		name, opts := f.Name, ""
		if tag := f.Tag.Get("parquet"); tag != "" {
			n, o, _ := strings.Cut(tag, ",")
			if n == "-" {
				continue
			}
			if n != "" {
				name = n
			}
			opts = o
		}
		rf := rowField{name: name, index: f.Index, kind: f.Type.Kind(), ts: strings.Contains(opts, "timestamp")}
		if rf.kind == reflect.Pointer {
			rf.ptr, rf.kind = true, f.Type.Elem().Kind()
		}
		out = append(out, rf)
	}
	return out
}

// planFile matches the row type's fields with the file's columns
// (through the column mapping, if any) and decides each conversion; a
// field it cannot fill exactly is an error wrapping ErrInexact.
func planFile[T any](pf *parquet.File, ri *readInfo, partition map[string]string) (*filePlan, error) {
	fields := rowFields(reflect.TypeFor[T]())
	top := pf.Schema().Fields()
	plan := &filePlan{fast: true, widen: true}
	for _, rf := range fields {
		if _, ok := partition[rf.name]; ok {
			if rf.kind != reflect.String {
				return nil, fmt.Errorf("partition column %s into a Go %v: %w", rf.name, rf.kind, ErrInexact)
			}
			continue // filled from partitionValues
		}
		phys := rf.name
		var byID = -1
		if ri != nil {
			if p, ok := ri.phys[rf.name]; ok {
				phys = p
			}
			if id, ok := ri.ids[rf.name]; ok && ri.mode == "id" {
				byID = id
			}
		}
		idx := -1
		for i, f := range top {
			if byID >= 0 && f.ID() == byID {
				idx = i
				break
			}
		}
		if idx < 0 {
			for i, f := range top {
				if f.Name() == phys {
					idx = i
					break
				}
			}
		}
		if idx < 0 {
			return nil, fmt.Errorf("column %s (%s) not in the file: %w", rf.name, phys, ErrInexact)
		}
		node := top[idx]
		if !node.Leaf() || node.Repeated() {
			return nil, fmt.Errorf("column %s is not a scalar: %w", rf.name, ErrInexact)
		}
		leaf, ok := pf.Schema().Lookup(node.Name())
		if !ok {
			return nil, fmt.Errorf("column %s: no leaf: %w", rf.name, ErrInexact)
		}
		c, err := convOf(rf, node.Type())
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", rf.name, err)
		}
		if rf.ptr && rf.ts {
			return nil, fmt.Errorf("column %s: a nullable timestamp field: %w", rf.name, ErrUnsupported)
		}
		cp := colPlan{name: rf.name, field: rf.index, kind: rf.kind, col: leaf.ColumnIndex, conv: c, optional: node.Optional(), ptr: rf.ptr}
		if c != convSame || cp.optional != cp.ptr || node.Name() != rf.name || byID >= 0 {
			plan.fast = false
		}
		if c != convSame || cp.optional && !cp.ptr || node.Name() != rf.name || byID >= 0 {
			plan.widen = false
		}
		plan.cols = append(plan.cols, cp)
	}
	if plan.fast {
		plan.widen = false
	}
	return plan, nil
}

// convOf decides how a column of Parquet type pt fills field rf.
func convOf(rf rowField, pt parquet.Type) (conv, error) {
	var lv format.LogicalTypeValue
	if lt := pt.LogicalType(); lt != nil {
		lv = lt.Value
	}
	kind := pt.Kind()
	bad := func() (conv, error) {
		ts := ""
		if rf.ts {
			ts = " timestamp"
		}
		return 0, fmt.Errorf("parquet %s %v into a Go %v%s: %w", kind, lv, rf.kind, ts, ErrInexact)
	}
	isInt := func(bits int8) bool { // no logical type, or a signed integer of at most bits
		switch t := lv.(type) {
		case nil:
			return true
		case *format.IntType:
			return t.IsSigned && t.BitWidth <= bits
		}
		return false
	}
	switch rf.kind {
	case reflect.String:
		switch lv.(type) {
		case nil, *format.StringType, *format.EnumType, *format.JsonType:
			if kind == parquet.ByteArray {
				return convSame, nil
			}
		}
	case reflect.Bool:
		if kind == parquet.Boolean && lv == nil {
			return convSame, nil
		}
	case reflect.Int32:
		if kind == parquet.Int32 && isInt(32) {
			return convSame, nil
		}
	case reflect.Int64:
		if rf.ts {
			if kind == parquet.Int96 && lv == nil {
				return convInt96, nil
			}
			if t, ok := lv.(*format.TimestampType); ok && kind == parquet.Int64 {
				switch t.Unit.Value.(type) {
				case *format.MicroSeconds:
					if t.IsAdjustedToUTC {
						return convSame, nil
					}
					return convMicros, nil
				case *format.MilliSeconds:
					return convMillis, nil
				case *format.NanoSeconds:
					return convNanos, nil
				}
			}
			return bad()
		}
		switch {
		case kind == parquet.Int64 && isInt(64):
			return convSame, nil
		case kind == parquet.Int32 && isInt(32):
			return convInt32To64, nil
		}
	case reflect.Float64:
		if lv == nil {
			switch kind {
			case parquet.Double:
				return convSame, nil
			case parquet.Float:
				return convFloatTo64, nil
			}
		}
	case reflect.Float32:
		if kind == parquet.Float && lv == nil {
			return convSame, nil
		}
	}
	return bad()
}

// julianUnixEpoch is the Julian day number of 1970-01-01.
const julianUnixEpoch = 2440588

// int96Micros converts an INT96 timestamp (nanoseconds of the day in the
// first 8 bytes, little-endian, then the Julian day) to microseconds since
// the Unix epoch, exactly or not at all.
func int96Micros(v [3]uint32) (int64, error) {
	nanos := uint64(v[1])<<32 | uint64(v[0])
	day := int64(int32(v[2]))
	if nanos >= 86400*1e9 {
		return 0, fmt.Errorf("INT96 with %d ns in a day: %w", nanos, ErrInexact)
	}
	if nanos%1000 != 0 {
		return 0, fmt.Errorf("INT96 %d ns is not a whole microsecond: %w", nanos, ErrInexact)
	}
	d := day - julianUnixEpoch
	if d > math.MaxInt64/86_400_000_000-1 || d < math.MinInt64/86_400_000_000+1 {
		return 0, fmt.Errorf("INT96 day %d out of range: %w", day, ErrInexact)
	}
	return d*86_400_000_000 + int64(nanos/1000), nil
}

// setValue converts v as c says and stores it in field f.
func (c *colPlan) setValue(f reflect.Value, v parquet.Value) error {
	if c.ptr {
		if v.IsNull() {
			f.SetZero()
			return nil
		}
		p := reflect.New(f.Type().Elem())
		f.Set(p)
		f = p.Elem()
	}
	if v.IsNull() {
		return fmt.Errorf("null in column %s: %w", c.name, ErrInexact)
	}
	switch c.conv {
	case convSame:
		switch c.kind {
		case reflect.String:
			f.SetString(string(v.ByteArray()))
		case reflect.Bool:
			f.SetBool(v.Boolean())
		case reflect.Int32:
			f.SetInt(int64(v.Int32()))
		case reflect.Int64:
			f.SetInt(v.Int64())
		case reflect.Float64:
			f.SetFloat(v.Double())
		case reflect.Float32:
			f.SetFloat(float64(v.Float()))
		}
	case convInt96:
		us, err := int96Micros(v.Int96())
		if err != nil {
			return fmt.Errorf("column %s: %w", c.name, err)
		}
		f.SetInt(us)
	case convMillis:
		ms := v.Int64()
		if ms > math.MaxInt64/1000 || ms < math.MinInt64/1000 {
			return fmt.Errorf("column %s: %d ms out of range: %w", c.name, ms, ErrInexact)
		}
		f.SetInt(ms * 1000)
	case convNanos:
		ns := v.Int64()
		if ns%1000 != 0 {
			return fmt.Errorf("column %s: %d ns is not a whole microsecond: %w", c.name, ns, ErrInexact)
		}
		f.SetInt(ns / 1000)
	case convMicros:
		f.SetInt(v.Int64())
	case convInt32To64:
		f.SetInt(int64(v.Int32()))
	case convFloatTo64:
		f.SetFloat(float64(v.Float()))
	}
	return nil
}

// readRows reads the rows of pf into out by plan, leaving out the row
// indexes dv deletes (nil: none).
func readRows[T any](pf *parquet.File, plan *filePlan, dv *roaring64.Bitmap, out []T) ([]T, error) {
	if plan.fast {
		r := parquet.NewGenericReader[T](pf)
		defer r.Close()
		// Read in chunks: the footer's row count is not trusted for an allocation.
		buf := make([]T, 1024)
		var row uint64
		for {
			n, err := r.Read(buf)
			for i := range buf[:n] {
				if dv == nil || !dv.Contains(row) {
					out = append(out, buf[i])
				}
				row++
			}
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrCorruptFile, err)
			}
			if n == 0 {
				return nil, fmt.Errorf("%w: no progress", ErrCorruptFile)
			}
		}
	}
	err := convertRows(pf, plan, dv, func(t T) error {
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// convertRows reads the rows of pf one by one by plan (with conversions),
// leaving out those dv deletes, and passes each to emit.
func convertRows[T any](pf *parquet.File, plan *filePlan, dv *roaring64.Bitmap, emit func(T) error) error {
	ncols := len(pf.Schema().Columns())
	vals := make([]parquet.Value, ncols)
	seen := make([]bool, ncols)
	rows := make([]parquet.Row, 256)
	var row uint64
	for _, rg := range pf.RowGroups() {
		rr := rg.Rows()
		for {
			n, err := rr.ReadRows(rows)
			for _, r := range rows[:n] {
				if dv != nil && dv.Contains(row) {
					row++
					continue
				}
				row++
				clear(seen)
				for _, v := range r {
					if c := v.Column(); c >= 0 && c < ncols && !seen[c] {
						vals[c], seen[c] = v, true
					}
				}
				var t T
				tv := reflect.ValueOf(&t).Elem()
				for i := range plan.cols {
					cp := &plan.cols[i]
					if !seen[cp.col] {
						_ = rr.Close()
						return fmt.Errorf("column %s: no value in row %d: %w", cp.name, row-1, ErrCorruptFile)
					}
					if err := cp.setValue(tv.FieldByIndex(cp.field), vals[cp.col]); err != nil {
						_ = rr.Close()
						return err
					}
				}
				if err := emit(t); err != nil {
					_ = rr.Close()
					return err
				}
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				_ = rr.Close()
				return fmt.Errorf("%w: %v", ErrCorruptFile, err)
			}
			if n == 0 {
				_ = rr.Close()
				return fmt.Errorf("%w: no progress", ErrCorruptFile)
			}
		}
		if err := rr.Close(); err != nil {
			return fmt.Errorf("%w: %v", ErrCorruptFile, err)
		}
	}
	return nil
}
