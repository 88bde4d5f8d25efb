package dbsqltest

import (
	"context"
	"fmt"

	"github.com/apache/thrift/lib/go/thrift"
)

// A decoded Thrift struct: field id → value. Values are bool, int8, int16,
// int32, int64, float64, string (binary and string alike), S, []any (list
// or set) and map[string]any (maps; keys rendered with %v).
type S map[int16]any

func (s S) str(id int16) string { v, _ := s[id].(string); return v }
func (s S) st(id int16) S       { v, _ := s[id].(S); return v }
func (s S) list(id int16) []any { v, _ := s[id].([]any); return v }

func readValue(ctx context.Context, p thrift.TProtocol, t thrift.TType) (any, error) {
	switch t {
	case thrift.BOOL:
		return p.ReadBool(ctx)
	case thrift.BYTE:
		return p.ReadByte(ctx)
	case thrift.I16:
		return p.ReadI16(ctx)
	case thrift.I32:
		return p.ReadI32(ctx)
	case thrift.I64:
		return p.ReadI64(ctx)
	case thrift.DOUBLE:
		return p.ReadDouble(ctx)
	case thrift.STRING:
		b, err := p.ReadBinary(ctx)
		return string(b), err
	case thrift.STRUCT:
		return readStruct(ctx, p)
	case thrift.LIST, thrift.SET:
		var et thrift.TType
		var n int
		var err error
		if t == thrift.LIST {
			et, n, err = p.ReadListBegin(ctx)
		} else {
			et, n, err = p.ReadSetBegin(ctx)
		}
		if err != nil {
			return nil, err
		}
		out := make([]any, 0, n)
		for range n {
			v, err := readValue(ctx, p, et)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		if t == thrift.LIST {
			return out, p.ReadListEnd(ctx)
		}
		return out, p.ReadSetEnd(ctx)
	case thrift.MAP:
		kt, vt, n, err := p.ReadMapBegin(ctx)
		if err != nil {
			return nil, err
		}
		out := make(map[string]any, n)
		for range n {
			k, err := readValue(ctx, p, kt)
			if err != nil {
				return nil, err
			}
			v, err := readValue(ctx, p, vt)
			if err != nil {
				return nil, err
			}
			out[fmt.Sprint(k)] = v
		}
		return out, p.ReadMapEnd(ctx)
	}
	return nil, fmt.Errorf("thrift type %v not handled", t)
}

func readStruct(ctx context.Context, p thrift.TProtocol) (S, error) {
	if _, err := p.ReadStructBegin(ctx); err != nil {
		return nil, err
	}
	s := S{}
	for {
		_, t, id, err := p.ReadFieldBegin(ctx)
		if err != nil {
			return nil, err
		}
		if t == thrift.STOP {
			break
		}
		v, err := readValue(ctx, p, t)
		if err != nil {
			return nil, fmt.Errorf("field %d: %w", id, err)
		}
		s[id] = v
		if err := p.ReadFieldEnd(ctx); err != nil {
			return nil, err
		}
	}
	return s, p.ReadStructEnd(ctx)
}

// W is a struct to write: fields in order.
type W []F

// F is one field to write; V is bool, int8, int16, int32, int64, float64,
// string, []byte, W, or L.
type F struct {
	ID int16
	T  thrift.TType
	V  any
}

// L is a list to write.
type L struct {
	Elem  thrift.TType
	Items []any
}

func writeValue(ctx context.Context, p thrift.TProtocol, t thrift.TType, v any) error {
	switch t {
	case thrift.BOOL:
		return p.WriteBool(ctx, v.(bool))
	case thrift.BYTE:
		return p.WriteByte(ctx, v.(int8))
	case thrift.I16:
		return p.WriteI16(ctx, v.(int16))
	case thrift.I32:
		return p.WriteI32(ctx, v.(int32))
	case thrift.I64:
		return p.WriteI64(ctx, v.(int64))
	case thrift.DOUBLE:
		return p.WriteDouble(ctx, v.(float64))
	case thrift.STRING:
		switch x := v.(type) {
		case []byte:
			return p.WriteBinary(ctx, x)
		default:
			return p.WriteString(ctx, x.(string))
		}
	case thrift.STRUCT:
		return writeStruct(ctx, p, v.(W))
	case thrift.LIST:
		l := v.(L)
		if err := p.WriteListBegin(ctx, l.Elem, len(l.Items)); err != nil {
			return err
		}
		for _, it := range l.Items {
			if err := writeValue(ctx, p, l.Elem, it); err != nil {
				return err
			}
		}
		return p.WriteListEnd(ctx)
	}
	return fmt.Errorf("thrift type %v not handled", t)
}

func writeStruct(ctx context.Context, p thrift.TProtocol, w W) error {
	if err := p.WriteStructBegin(ctx, "s"); err != nil {
		return err
	}
	for _, f := range w {
		if err := p.WriteFieldBegin(ctx, "f", f.T, f.ID); err != nil {
			return err
		}
		if err := writeValue(ctx, p, f.T, f.V); err != nil {
			return fmt.Errorf("field %d: %w", f.ID, err)
		}
		if err := p.WriteFieldEnd(ctx); err != nil {
			return err
		}
	}
	if err := p.WriteFieldStop(ctx); err != nil {
		return err
	}
	return p.WriteStructEnd(ctx)
}
