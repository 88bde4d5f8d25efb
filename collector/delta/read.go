package delta

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"github.com/RoaringBitmap/roaring/v2/roaring64"

	"github.com/pilake/pilake/collector/lake"
)

// ReadTable replays table's _delta_log (checkpoint + JSON commits) and returns
// the rows of every live file for which keep(file) is true (keep nil = all),
// file by file in path order. Partition columns are filled from the files'
// partitionValues. A table with no log yields no rows and an error wrapping
// ErrNoTable.
func ReadTable[T any](ctx context.Context, l lake.Lake, table string, keep func(AddFile) bool) ([]T, error) {
	snap, err := Load(ctx, l, table)
	if err != nil {
		return nil, err
	}
	return ReadFiles[T](ctx, l, table, snap.Files(), keep)
}

// ReadFiles reads the rows of files (add actions of table).
func ReadFiles[T any](ctx context.Context, l lake.Lake, table string, files []AddFile, keep func(AddFile) bool) ([]T, error) {
	setters, err := partitionSetters[T]()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", table, err)
	}
	var out []T
	for _, f := range files {
		if keep != nil && !keep(f) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		start := len(out)
		out, err = readFile(ctx, l, table, f, out)
		if err != nil {
			return nil, err
		}
		for col, v := range f.PartitionValues {
			set, ok := setters[col]
			if !ok {
				continue
			}
			for i := start; i < len(out); i++ {
				set(&out[i], v)
			}
		}
	}
	return out, nil
}

func readFile[T any](ctx context.Context, l lake.Lake, table string, f AddFile, out []T) (_ []T, err error) {
	p, err := dataPath(table, f.Path)
	if err != nil {
		return nil, err
	}
	var dv *roaring64.Bitmap
	if f.DeletionVector != nil {
		if dv, err = loadDV(ctx, l, table, f.DeletionVector); err != nil {
			return nil, fmt.Errorf("reading data file %s of %s: %w", f.Path, table, err)
		}
	}
	data, err := l.Get(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("reading data file of %s: %w", table, err)
	}
	// The file comes from the lake: parquet-go may panic on a corrupt one.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading data file %s of %s: %w: %v", f.Path, table, ErrCorruptFile, r)
		}
	}()
	pf, err := OpenParquet(data)
	if err != nil {
		return nil, fmt.Errorf("reading data file %s of %s: %w: %v", f.Path, table, ErrCorruptFile, err)
	}
	plan, err := planFile[T](pf, f.read, f.PartitionValues)
	if err != nil {
		return nil, fmt.Errorf("reading data file %s of %s: %w", f.Path, table, err)
	}
	n := len(out)
	out, err = readRows(pf, plan, dv, out)
	if err != nil {
		return nil, fmt.Errorf("reading data file %s of %s: %w", f.Path, table, err)
	}
	if dv != nil {
		if want := pf.NumRows() - int64(dv.GetCardinality()); int64(len(out)-n) != want {
			return nil, fmt.Errorf("reading data file %s of %s: %d rows left after the deletion vector, want %d: %w",
				f.Path, table, len(out)-n, want, ErrCorruptFile)
		}
	}
	return out, nil
}

// dataPath maps an add action's (URI-encoded, relative) path to an object
// name: the decoded path (CanonicalPath) below the table.
func dataPath(table, p string) (string, error) {
	if isAbsolute(p) {
		return "", fmt.Errorf("reading %s: absolute data file path %q: %w", table, p, ErrUnsupported)
	}
	p, err := CanonicalPath(p)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", table, err)
	}
	name := table + "/" + p
	if err := lake.CheckName(name); err != nil {
		return "", fmt.Errorf("reading %s: %w", table, err)
	}
	return name, nil
}

func partitionSetters[T any]() (map[string]func(*T, string), error) {
	t := reflect.TypeFor[T]()
	out := map[string]func(*T, string){}
	if t.Kind() != reflect.Struct {
		return out, nil
	}
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() || f.Anonymous {
			continue
		}
		name := f.Name
		if tag := f.Tag.Get("parquet"); tag != "" {
			if n, _, _ := strings.Cut(tag, ","); n != "" {
				name = n
			}
		}
		if f.Type.Kind() != reflect.String {
			continue
		}
		idx := f.Index
		out[name] = func(p *T, v string) { reflect.ValueOf(p).Elem().FieldByIndex(idx).SetString(v) }
	}
	return out, nil
}
