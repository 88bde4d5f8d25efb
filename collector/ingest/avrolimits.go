package ingest

import (
	"errors"
	"fmt"

	"github.com/hamba/avro/v2"
)

// RoutingLimits bound what one untrusted routing file may cost. Zero fields
// take the defaults in brackets. A file beyond a limit is quarantined (with
// the reason) and checkpointed, never retried.
type RoutingLimits struct {
	// MaxFileBytes: larger files are not read at all [64 MiB].
	MaxFileBytes int64
	// MaxBlockBytes: the most one Avro block may decompress to [16 MiB].
	MaxBlockBytes int
	// MaxFileDecompressedBytes: the most all of a file's blocks may
	// decompress to [256 MiB].
	MaxFileDecompressedBytes int64
	// MaxMapEntries: the most entries in one Avro map (Properties,
	// SystemProperties) [256].
	MaxMapEntries int
}

func (l RoutingLimits) withDefaults() RoutingLimits {
	if l.MaxFileBytes == 0 {
		l.MaxFileBytes = 64 << 20
	}
	if l.MaxBlockBytes == 0 {
		l.MaxBlockBytes = 16 << 20
	}
	if l.MaxFileDecompressedBytes == 0 {
		l.MaxFileDecompressedBytes = 256 << 20
	}
	if l.MaxMapEntries == 0 {
		l.MaxMapEntries = 256
	}
	return l
}

// ErrRoutingLimit is wrapped (with ErrRoutingFile) by errors about a file
// beyond a RoutingLimits bound.
var ErrRoutingLimit = errors.New("routing file beyond a limit")

// Schema bounds: a writer schema is validated against them before hamba/avro
// decodes anything with it. A recursive schema makes hamba/avro's decoder
// recurse until the Go stack overflows, which kills the process (no recover
// catches it), so recursion is refused outright.
const (
	maxSchemaBytes = 64 << 10
	maxSchemaDepth = 32
	maxSchemaNodes = 1024
)

// checkSchemaJSON refuses a schema text too large or nested too deep for
// the JSON parser, before it is parsed.
func checkSchemaJSON(js []byte) error {
	if len(js) > maxSchemaBytes {
		return fmt.Errorf("schema of %d bytes (max %d)", len(js), maxSchemaBytes)
	}
	depth, inString, escaped := 0, false, false
	for _, c := range js {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			if depth++; depth > 2*maxSchemaDepth {
				return fmt.Errorf("schema JSON nested deeper than %d", 2*maxSchemaDepth)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// validateSchema refuses recursive schemas (a named type inside itself),
// and ones deeper than maxSchemaDepth or larger than maxSchemaNodes.
func validateSchema(s avro.Schema) error {
	nodes := 0
	var walk func(s avro.Schema, depth int, path map[string]bool) error
	walk = func(s avro.Schema, depth int, path map[string]bool) error {
		if nodes++; nodes > maxSchemaNodes {
			return fmt.Errorf("schema has more than %d types", maxSchemaNodes)
		}
		if depth > maxSchemaDepth {
			return fmt.Errorf("schema nested deeper than %d", maxSchemaDepth)
		}
		if ref, ok := s.(*avro.RefSchema); ok {
			s = ref.Schema()
		}
		if n, ok := s.(avro.NamedSchema); ok {
			if path[n.FullName()] {
				return fmt.Errorf("schema is recursive: %s contains itself", n.FullName())
			}
			path[n.FullName()] = true
			defer delete(path, n.FullName())
		}
		switch t := s.(type) {
		case *avro.RecordSchema:
			for _, f := range t.Fields() {
				if err := walk(f.Type(), depth+1, path); err != nil {
					return err
				}
			}
		case *avro.ArraySchema:
			return walk(t.Items(), depth+1, path)
		case *avro.MapSchema:
			return walk(t.Values(), depth+1, path)
		case *avro.UnionSchema:
			for _, u := range t.Types() {
				if err := walk(u, depth+1, path); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(s, 0, map[string]bool{})
}

// scanDatum walks one datum of (validated) schema s in r without
// allocating, checking every length against the data and every map and
// array against maxEntries, so that hamba/avro decodes only data whose
// cost is known.
func scanDatum(r *avroReader, s avro.Schema, maxEntries int) error {
	if ref, ok := s.(*avro.RefSchema); ok {
		s = ref.Schema()
	}
	switch t := s.(type) {
	case *avro.RecordSchema:
		for _, f := range t.Fields() {
			if err := scanDatum(r, f.Type(), maxEntries); err != nil {
				return err
			}
		}
		return nil
	case *avro.UnionSchema:
		i, err := r.long()
		if err != nil {
			return err
		}
		types := t.Types()
		if i < 0 || i >= int64(len(types)) {
			return fmt.Errorf("%w: union index %d of %d", ErrRoutingFile, i, len(types))
		}
		return scanDatum(r, types[i], maxEntries)
	case *avro.ArraySchema, *avro.MapSchema:
		total := 0
		for {
			n, err := r.long()
			if err != nil {
				return err
			}
			if n == 0 {
				return nil
			}
			if n < 0 {
				n = -n
				if _, err := r.long(); err != nil {
					return err
				}
			}
			if total += int(min(n, int64(maxEntries)+1)); total > maxEntries {
				return fmt.Errorf("%w: %w: a map or array of more than %d entries", ErrRoutingFile, ErrRoutingLimit, maxEntries)
			}
			for range n {
				if a, ok := t.(*avro.ArraySchema); ok {
					if err := scanDatum(r, a.Items(), maxEntries); err != nil {
						return err
					}
					continue
				}
				m := t.(*avro.MapSchema)
				if err := skipLen(r); err != nil { // key
					return err
				}
				if err := scanDatum(r, m.Values(), maxEntries); err != nil {
					return err
				}
			}
		}
	case *avro.FixedSchema:
		_, err := r.bytes(int64(t.Size()))
		return err
	case *avro.EnumSchema:
		_, err := r.long()
		return err
	}
	switch s.Type() {
	case avro.Null:
		return nil
	case avro.Boolean:
		_, err := r.bytes(1)
		return err
	case avro.Int, avro.Long:
		_, err := r.long()
		return err
	case avro.Float:
		_, err := r.bytes(4)
		return err
	case avro.Double:
		_, err := r.bytes(8)
		return err
	case avro.String, avro.Bytes:
		return skipLen(r)
	}
	return fmt.Errorf("%w: schema type %s not supported", ErrRoutingFile, s.Type())
}

func skipLen(r *avroReader) error {
	n, err := r.long()
	if err != nil {
		return err
	}
	_, err = r.bytes(n)
	return err
}
