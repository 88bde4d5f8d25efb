package delta

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Vacuum deletes the table's data files that no live add action references
// and that are older than retention: files removed by compaction (once
// readers of older versions no longer need them) and files of commits that
// never happened (a writer that failed between writing a file and
// committing it). Like Delta's VACUUM it never touches _delta_log or other
// names starting with '_' or '.'. It returns how many files it deleted.
// retention below an hour is refused: a concurrent writer's files are not
// yet committed.
func (t *Table) Vacuum(ctx context.Context, retention time.Duration) (int, error) {
	if retention < time.Hour {
		return 0, fmt.Errorf("vacuuming %s: retention %v is under an hour", t.name, retention)
	}
	if err := t.Refresh(ctx); err != nil {
		return 0, fmt.Errorf("vacuuming %s: %w", t.name, err)
	}
	objs, err := t.l.List(ctx, t.name+"/")
	if err != nil {
		return 0, fmt.Errorf("vacuuming %s: %w", t.name, err)
	}
	cutoff := t.opts.Now().Add(-retention)
	n := 0
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Name, t.name+"/")
		hidden := false
		for _, part := range strings.Split(rel, "/") {
			if strings.HasPrefix(part, "_") || strings.HasPrefix(part, ".") {
				hidden = true
			}
		}
		if hidden || !strings.HasSuffix(rel, ".parquet") || !o.ModTime.Before(cutoff) {
			continue
		}
		if _, live := t.snap.files[rel]; live {
			continue
		}
		if err := t.l.Delete(ctx, o.Name); err != nil {
			return n, fmt.Errorf("vacuuming %s: %w", t.name, err)
		}
		n++
	}
	return n, nil
}
