package delta

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// Field is a column of a Delta struct schema (the schemaString of metaData).
type Field struct {
	Name     string         `json:"name"`
	Type     string         `json:"type"`
	Nullable bool           `json:"nullable"`
	Metadata map[string]any `json:"metadata"`
}

// StructType is a Delta table schema.
type StructType struct {
	Type   string  `json:"type"` // always "struct"
	Fields []Field `json:"fields"`
}

// String renders the schema as a schemaString.
func (s StructType) String() string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Field returns the field named name.
func (s StructType) Field(name string) (Field, bool) {
	for _, f := range s.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// ParseSchema parses a schemaString.
func ParseSchema(schemaString string) (StructType, error) {
	var s StructType
	if err := json.Unmarshal([]byte(schemaString), &s); err != nil {
		return s, fmt.Errorf("parsing delta schema: %w", err)
	}
	if s.Type != "struct" {
		return s, fmt.Errorf("parsing delta schema: type %q, want struct", s.Type)
	}
	return s, nil
}

// SchemaOf returns the Delta schema of row type T, derived from its parquet
// schema (struct tags). Only flat rows of boolean, int32 ("integer"),
// int64 ("long"), TIMESTAMP(MICROS, UTC) int64 ("timestamp"), float, double
// and string columns are supported.
func SchemaOf[T any]() (StructType, error) {
	return deltaSchema(parquet.SchemaOf(new(T)))
}

func deltaSchema(ps *parquet.Schema) (StructType, error) {
	st := StructType{Type: "struct"}
	for _, f := range ps.Fields() {
		if !f.Leaf() {
			return st, fmt.Errorf("deriving delta schema: column %s is nested: %w", f.Name(), ErrUnsupported)
		}
		t, err := deltaType(f.Type())
		if err != nil {
			return st, fmt.Errorf("deriving delta schema: column %s: %w", f.Name(), err)
		}
		st.Fields = append(st.Fields, Field{Name: f.Name(), Type: t, Nullable: true, Metadata: map[string]any{}})
	}
	return st, nil
}

func deltaType(t parquet.Type) (string, error) {
	var lv format.LogicalTypeValue
	if lt := t.LogicalType(); lt != nil {
		lv = lt.Value
	}
	switch t.Kind() {
	case parquet.Boolean:
		return "boolean", nil
	case parquet.Int32:
		if it, ok := lv.(*format.IntType); lv == nil || ok && it.BitWidth == 32 && it.IsSigned {
			return "integer", nil
		}
	case parquet.Int64:
		if ts, ok := lv.(*format.TimestampType); ok {
			if _, micros := ts.Unit.Value.(*format.MicroSeconds); micros && ts.IsAdjustedToUTC {
				return "timestamp", nil
			}
			break
		}
		if it, ok := lv.(*format.IntType); lv == nil || ok && it.BitWidth == 64 && it.IsSigned {
			return "long", nil
		}
	case parquet.Float:
		return "float", nil
	case parquet.Double:
		return "double", nil
	case parquet.ByteArray:
		if _, ok := lv.(*format.StringType); ok {
			return "string", nil
		}
	}
	return "", fmt.Errorf("parquet type %s: %w", t, ErrUnsupported)
}

// dataSchema is the parquet schema of T's data files: T's columns minus the
// partition columns, which live in the log's partitionValues only.
func dataSchema[T any](partitionColumns []string) (*parquet.Schema, error) {
	full := parquet.SchemaOf(new(T))
	if len(partitionColumns) == 0 {
		return full, nil
	}
	g := parquet.Group{}
	found := 0
	for _, f := range full.Fields() {
		if slices.Contains(partitionColumns, f.Name()) {
			found++
			continue
		}
		g[f.Name()] = f
	}
	if found != len(partitionColumns) {
		return nil, fmt.Errorf("partition columns %v are not all columns of %s", partitionColumns, full.Name())
	}
	return parquet.NewSchema(full.Name(), g), nil
}
