package delta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// CompactOptions configure Compact. Compaction streams the rows it rewrites
// (a chunk of rows at a time, one source file's bytes, and the new file's
// encoded bytes in memory); its work per call is bounded by rows, from the
// files' statistics.
type CompactOptions struct {
	// SmallFileRows: files with fewer rows are candidates; 0 means 1<<18.
	SmallFileRows int64
	// TargetRows bounds the rows of one rewritten file (and so the memory of
	// a compaction); 0 means 1<<20.
	TargetRows int64
	// MinFiles: a partition's small files are rewritten when at least this
	// many fit in one target file; 0 means 8.
	MinFiles int
	// MaxRows bounds the rows one Compact call rewrites (the rest waits for
	// the next call), so a call's time is bounded too; 0 means 4×TargetRows.
	MaxRows int64
}

// Compact rewrites small files of each partition of t into files of up to
// TargetRows rows, in one commit of add and remove actions with
// dataChange=false (what Delta's OPTIMIZE does), and returns how many files
// it removed. Readers see the same rows before and after. Files without
// statistics are left alone.
func Compact[T any](ctx context.Context, t *Table, o CompactOptions) (int, error) {
	if o.SmallFileRows <= 0 {
		o.SmallFileRows = 1 << 18
	}
	if o.TargetRows <= 0 {
		o.TargetRows = 1 << 20
	}
	if o.MinFiles <= 1 {
		o.MinFiles = 8
	}
	if o.MaxRows <= 0 {
		o.MaxRows = 4 * o.TargetRows
	}
	type small struct {
		f    AddFile
		rows int64
	}
	groups := map[string][]small{}
	for _, f := range t.snap.Files() {
		st, err := f.ParsedStats()
		if err != nil || st.NumRecords >= o.SmallFileRows {
			continue
		}
		k := partitionKey(f.PartitionValues)
		groups[k] = append(groups[k], small{f, st.NumRecords})
	}
	var actions []Action
	removed := 0
	var budget = o.MaxRows
	now := t.opts.Now().UnixMilli()
	for _, k := range slices.Sorted(maps.Keys(groups)) {
		g := groups[k]
		for len(g) >= o.MinFiles && budget > 0 {
			// The longest run of files, in path order, that fits in a target file.
			var bin []AddFile
			var rows int64
			for len(g) > 0 && (len(bin) == 0 || rows+g[0].rows <= o.TargetRows) {
				bin = append(bin, g[0].f)
				rows += g[0].rows
				g = g[1:]
			}
			if len(bin) < o.MinFiles {
				continue
			}
			budget -= rows
			add, err := rewrite[T](ctx, t, bin)
			if err != nil {
				return 0, fmt.Errorf("compacting %s: %w", t.name, err)
			}
			add.DataChange = false
			actions = append(actions, Action{Add: &add})
			for _, f := range bin {
				actions = append(actions, Action{Remove: &RemoveFile{Path: f.Path, DeletionTimestamp: now, DataChange: false,
					ExtendedFileMetadata: true, PartitionValues: f.PartitionValues, Size: f.Size}})
			}
			removed += len(bin)
		}
	}
	if len(actions) == 0 {
		return 0, nil
	}
	if _, err := t.Commit(ctx, actions, "OPTIMIZE"); err != nil {
		return 0, err
	}
	return removed, nil
}

func partitionKey(pv map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(pv)) {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(pv[k])
		b.WriteByte('/')
	}
	return b.String()
}

// rewrite copies the rows of files (all of one partition) into one new data
// file of t, a chunk at a time, and returns its add action.
func rewrite[T any](ctx context.Context, t *Table, files []AddFile) (AddFile, error) {
	ps, err := dataSchema[T](t.opts.PartitionColumns)
	if err != nil {
		return AddFile{}, err
	}
	ds, err := deltaSchema(ps)
	if err != nil {
		return AddFile{}, err
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[T](&buf, append(WriterOptions(t.opts.Compression), ps)...)
	chunk := make([]T, 1024)
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return AddFile{}, err
		}
		if err := copyFile(ctx, t, f, w, chunk); err != nil {
			return AddFile{}, err
		}
	}
	if err := w.Close(); err != nil {
		return AddFile{}, fmt.Errorf("encoding parquet: %w", err)
	}
	st, err := FileStats(buf.Bytes(), ds)
	if err != nil {
		return AddFile{}, err
	}
	return t.PutFile(ctx, buf.Bytes(), st, files[0].PartitionValues)
}

// copyFile writes the rows of data file f of t to w. Partition columns are
// not in the files (nor in w's schema), so they need no filling.
func copyFile[T any](ctx context.Context, t *Table, f AddFile, w *parquet.GenericWriter[T], chunk []T) (err error) {
	p, err := dataPath(t.name, f.Path)
	if err != nil {
		return err
	}
	data, err := t.l.Get(ctx, p)
	if err != nil {
		return fmt.Errorf("reading data file of %s: %w", t.name, err)
	}
	// The file comes from the lake: parquet-go may panic on a corrupt one.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading data file %s of %s: %w: %v", f.Path, t.name, ErrCorruptFile, r)
		}
	}()
	pf, err := OpenParquet(data)
	if err != nil {
		return fmt.Errorf("reading data file %s of %s: %w: %v", f.Path, t.name, ErrCorruptFile, err)
	}
	r := parquet.NewGenericReader[T](pf)
	defer r.Close()
	for {
		n, rerr := r.Read(chunk)
		if n > 0 {
			if _, err := w.Write(chunk[:n]); err != nil {
				return fmt.Errorf("encoding parquet: %w", err)
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("reading data file %s of %s: %w: %v", f.Path, t.name, ErrCorruptFile, rerr)
		}
		if n == 0 {
			return fmt.Errorf("reading data file %s of %s: %w: no progress", f.Path, t.name, ErrCorruptFile)
		}
	}
}
