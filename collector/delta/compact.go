package delta

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// CompactOptions configure Compact.
type CompactOptions struct {
	// SmallFileSize: files smaller than this are candidates; 0 means 32 MiB.
	SmallFileSize int64
	// MinFiles: a partition is compacted when it has at least this many small
	// files; 0 means 8.
	MinFiles int
}

// Compact rewrites the small files of each partition of t into one file per
// partition, in one commit of add and remove actions with dataChange=false
// (what Delta's OPTIMIZE does), and returns how many files it removed.
// Readers see the same rows before and after.
func Compact[T any](ctx context.Context, t *Table, o CompactOptions) (int, error) {
	if o.SmallFileSize <= 0 {
		o.SmallFileSize = 32 << 20
	}
	if o.MinFiles <= 1 {
		o.MinFiles = 8
	}
	groups := map[string][]AddFile{}
	for _, f := range t.snap.Files() {
		if f.Size < o.SmallFileSize {
			k := partitionKey(f.PartitionValues)
			groups[k] = append(groups[k], f)
		}
	}
	var actions []Action
	removed := 0
	now := t.opts.Now().UnixMilli()
	for _, k := range slices.Sorted(maps.Keys(groups)) {
		files := groups[k]
		if len(files) < o.MinFiles {
			continue
		}
		rows, err := ReadFiles[T](ctx, t.l, t.name, files, nil)
		if err != nil {
			return 0, fmt.Errorf("compacting %s: %w", t.name, err)
		}
		add, err := WriteFile(ctx, t, rows, files[0].PartitionValues)
		if err != nil {
			return 0, fmt.Errorf("compacting %s: %w", t.name, err)
		}
		add.DataChange = false
		actions = append(actions, Action{Add: &add})
		for _, f := range files {
			actions = append(actions, Action{Remove: &RemoveFile{Path: f.Path, DeletionTimestamp: now, DataChange: false,
				ExtendedFileMetadata: true, PartitionValues: f.PartitionValues, Size: f.Size}})
		}
		removed += len(files)
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
