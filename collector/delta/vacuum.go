package delta

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
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

// CleanupLog deletes log entries that the latest checkpoint makes
// unnecessary and that are older than retention (the protocol's metadata
// cleanup; Delta's delta.logRetentionDuration defaults to 30 days): JSON
// commits up to that checkpoint's version and older checkpoints. Readers
// start from _last_checkpoint, so nothing they need is removed; only time
// travel before the checkpoint is lost. It returns how many objects it deleted.
func (t *Table) CleanupLog(ctx context.Context, retention time.Duration) (int, error) {
	if retention < time.Hour {
		return 0, fmt.Errorf("cleaning the log of %s: retention %v is under an hour", t.name, retention)
	}
	data, err := t.l.Get(ctx, LastCheckpointName(t.name))
	if err != nil {
		return 0, fmt.Errorf("cleaning the log of %s: %w", t.name, err)
	}
	var lc LastCheckpoint
	if err := json.Unmarshal(data, &lc); err != nil {
		return 0, fmt.Errorf("cleaning the log of %s: %w: _last_checkpoint: %v", t.name, ErrCorruptLog, err)
	}
	if _, err := t.l.Get(ctx, CheckpointName(t.name, lc.Version)); err != nil {
		return 0, fmt.Errorf("cleaning the log of %s: checkpoint %d: %w", t.name, lc.Version, err)
	}
	objs, err := t.l.List(ctx, LogDir(t.name))
	if err != nil {
		return 0, fmt.Errorf("cleaning the log of %s: %w", t.name, err)
	}
	cutoff := t.opts.Now().Add(-retention)
	n := 0
	for _, o := range objs {
		base := path.Base(o.Name)
		var v int64
		switch {
		case len(base) == 25 && strings.HasSuffix(base, ".json"):
			v, err = strconv.ParseInt(base[:20], 10, 64)
			if err != nil || v > lc.Version {
				continue
			}
		case len(base) == 39 && strings.HasSuffix(base, ".checkpoint.parquet"):
			v, err = strconv.ParseInt(base[:20], 10, 64)
			if err != nil || v >= lc.Version {
				continue
			}
		default:
			continue
		}
		if !o.ModTime.Before(cutoff) {
			continue
		}
		if err := t.l.Delete(ctx, o.Name); err != nil {
			return n, fmt.Errorf("cleaning the log of %s: %w", t.name, err)
		}
		n++
	}
	return n, nil
}
