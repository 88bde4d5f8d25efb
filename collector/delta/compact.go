package delta

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// CompactOptions configure Compact. Compaction holds the rows it rewrites in
// memory, so it is bounded by rows (from the files' statistics), not bytes.
type CompactOptions struct {
	// SmallFileRows: files with fewer rows are candidates; 0 means 1<<18.
	SmallFileRows int64
	// TargetRows bounds the rows of one rewritten file (and so the memory of
	// a compaction); 0 means 1<<20.
	TargetRows int64
	// MinFiles: a partition's small files are rewritten when at least this
	// many fit in one target file; 0 means 8.
	MinFiles int
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
	now := t.opts.Now().UnixMilli()
	for _, k := range slices.Sorted(maps.Keys(groups)) {
		g := groups[k]
		for len(g) >= o.MinFiles {
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
			data, err := ReadFiles[T](ctx, t.l, t.name, bin, nil)
			if err != nil {
				return 0, fmt.Errorf("compacting %s: %w", t.name, err)
			}
			add, err := WriteFile(ctx, t, data, bin[0].PartitionValues)
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
