package delta

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pilake/pilake/collector/lake"
)

// Vacuum deletes the table's data files that the table no longer needs, as
// Delta's VACUUM does: a file is kept while a live add action references it
// or a remove action whose deletionTimestamp is within retention does
// (readers of the versions before the remove still read it); any other
// file is deleted once it is older than retention (its modification time):
// files removed longer ago than retention, and files of commits that never
// happened (a writer that failed between writing a file and committing it).
// Paths are compared decoded (CanonicalPath): a file in a Hive-escaped
// partition directory matches its URI-encoded add.path. Like Delta's VACUUM
// it never touches _delta_log or other names starting with '_' or '.'. A
// tombstone without a deletionTimestamp keeps its file until the file is
// older than retention. It returns how many files it deleted. retention
// below an hour is refused: a concurrent writer's files are not yet
// committed. A table whose live files have absolute paths is refused
// (ErrUnsupported): they might lie below the table under a name this
// comparison cannot see.
func (t *Table) Vacuum(ctx context.Context, retention time.Duration) (int, error) {
	if retention < time.Hour {
		return 0, fmt.Errorf("vacuuming %s: retention %v is under an hour", t.name, retention)
	}
	// The whole state, with the tombstones of the last checkpoint (a
	// Table's own snapshot leaves those out of memory: they are streamed
	// from its checkpoint; if that fails, the table is loaded whole).
	snap, err := t.vacuumState(ctx)
	if err != nil {
		return 0, fmt.Errorf("vacuuming %s: %w", t.name, err)
	}
	// vacuumProtocolCheck: Vacuum is a write; the table must ask nothing
	// of writers that pilake does not honour.
	if err := checkWritable(snap.Protocol, snap.Metadata); err != nil {
		return 0, fmt.Errorf("vacuuming %s: %w", t.name, err)
	}
	cutoff := t.opts.Now().Add(-retention)
	keep := map[string]bool{}
	live := func(f *AddFile) error {
		if isAbsolute(f.Path) {
			return fmt.Errorf("vacuuming %s: live file with absolute path %q: %w", t.name, f.Path, ErrUnsupported)
		}
		keep[canonicalOrRaw(f.Path)] = true
		if dv := f.DeletionVector; dv != nil && dv.StorageType == "u" {
			if p, err := dvRelPath(dv.PathOrInlineDv); err == nil {
				keep[p] = true
			}
		}
		return nil
	}
	for _, f := range snap.files {
		if err := live(&f); err != nil {
			return 0, err
		}
	}
	// The live files of sealed sidecars (seal.go) are read from them.
	err = eachCheckpointAction(ctx, t.l, snap.sealedNames(), func(a Action) error {
		if a.Add == nil {
			return nil
		}
		return live(a.Add)
	})
	if err != nil {
		return 0, fmt.Errorf("vacuuming %s: %w", t.name, err)
	}
	for _, r := range snap.tombstones {
		if r.DeletionTimestamp == 0 || r.DeletionTimestamp >= cutoff.UnixMilli() {
			keep[canonicalOrRaw(r.Path)] = true
			if dv := r.DeletionVector; dv != nil && dv.StorageType == "u" {
				if p, err := dvRelPath(dv.PathOrInlineDv); err == nil {
					keep[p] = true
				}
			}
		}
	}
	objs, err := t.l.List(ctx, t.name+"/")
	if err != nil {
		return 0, fmt.Errorf("vacuuming %s: %w", t.name, err)
	}
	n := 0
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Name, t.name+"/")
		hidden := false
		for _, part := range strings.Split(rel, "/") {
			if strings.HasPrefix(part, "_") || strings.HasPrefix(part, ".") {
				hidden = true
			}
		}
		if hidden || !strings.HasSuffix(rel, ".parquet") || keep[rel] || !o.ModTime.Before(cutoff) {
			continue
		}
		if err := t.l.Delete(ctx, o.Name); err != nil {
			return n, fmt.Errorf("vacuuming %s: %w", t.name, err)
		}
		n++
	}
	return n, nil
}

// vacuumState is the table's current state with every tombstone: the
// Table's snapshot brought up to date, and the tombstones it does not hold
// streamed from its checkpoint (no whole Load every hour: the live files
// are in memory already). If the checkpoint cannot be read (another
// writer's cleanup deleted it), the table is loaded whole.
func (t *Table) vacuumState(ctx context.Context) (*Snapshot, error) {
	if err := t.Refresh(ctx); err != nil {
		return nil, err
	}
	if !t.snap.lean || t.snap.carried == 0 {
		return t.snap, nil
	}
	snap := &Snapshot{Protocol: t.snap.Protocol, Metadata: t.snap.Metadata, files: t.snap.files, sealed: t.snap.sealed, tombstones: maps.Clone(t.snap.tombstones)}
	err := eachCheckpointAction(ctx, t.l, t.snap.tombFiles, func(a Action) error {
		if rm := a.Remove; rm != nil {
			p, err := fileKey(rm.Path, rm.DeletionVector)
			if err != nil {
				return err
			}
			if _, live := snap.files[p]; !live {
				if _, newer := snap.tombstones[p]; !newer {
					snap.tombstones[p] = *rm
				}
			}
		}
		return nil
	})
	if err == nil {
		return snap, nil
	}
	return Load(ctx, t.l, t.name)
}

// logEntry is a file directly in _delta_log that metadata cleanup may delete.
type logEntry struct {
	name    string
	version int64
	kind    string // "commit", "checkpoint" (classic or a part), "crc", "compacted"
	modTime time.Time
}

// parseLogName recognises the log's file names: NNN.json, NNN.checkpoint.parquet,
// NNN.checkpoint.P.N.parquet, NNN.checkpoint.UUID.json|parquet, NNN.crc,
// NNN.MMM.compacted.json (version: the start version). Anything else is not
// a log entry.
func parseLogName(base string) (v int64, kind string, ok bool) {
	if len(base) < 21 || base[20] != '.' {
		return 0, "", false
	}
	v, err := strconv.ParseInt(base[:20], 10, 64)
	if err != nil || v < 0 {
		return 0, "", false
	}
	rest := base[21:]
	switch {
	case rest == "json":
		return v, "commit", true
	case rest == "crc":
		return v, "crc", true
	case strings.HasPrefix(rest, "checkpoint.") && (strings.HasSuffix(rest, ".parquet") || strings.HasSuffix(rest, ".json")):
		return v, "checkpoint", true
	case len(rest) == 35 && strings.HasSuffix(rest, ".compacted.json"):
		if _, err := strconv.ParseInt(rest[:20], 10, 64); err == nil {
			return v, "compacted", true
		}
	}
	return 0, "", false
}

// CleanupLog deletes log entries no version within retention needs, by the
// protocol's metadata cleanup: the cutoff commit is the newest commit not
// newer than now - retention (by its file's modification time); the cutoff
// checkpoint the newest complete checkpoint not newer than the cutoff
// commit. Commits, checkpoints and .crc files before the cutoff checkpoint's
// version are deleted, and log compaction files starting at or before it;
// the cutoff checkpoint, its own commit and everything after stay, so every
// version from the cutoff commit on can still be reconstructed (time
// travel, DESCRIBE HISTORY). Without such a checkpoint nothing is deleted.
// Then sidecar files that no remaining checkpoint references go
// (cleanupSidecars). Delta's delta.logRetentionDuration defaults to 30 days. It returns
// how many objects it deleted.
func (t *Table) CleanupLog(ctx context.Context, retention time.Duration) (int, error) {
	if retention < time.Hour {
		return 0, fmt.Errorf("cleaning the log of %s: retention %v is under an hour", t.name, retention)
	}
	objs, err := t.l.List(ctx, LogDir(t.name))
	if err != nil {
		return 0, fmt.Errorf("cleaning the log of %s: %w", t.name, err)
	}
	cutoff := t.opts.Now().Add(-retention)
	var entries []logEntry
	cutoffCommit := int64(-1)
	checkpoints := map[int64]*checkpointParts{}
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Name, LogDir(t.name))
		if strings.Contains(rel, "/") {
			continue
		}
		v, kind, ok := parseLogName(rel)
		if !ok {
			continue
		}
		entries = append(entries, logEntry{name: o.Name, version: v, kind: kind, modTime: o.ModTime})
		switch kind {
		case "commit":
			if !o.ModTime.After(cutoff) && v > cutoffCommit {
				cutoffCommit = v
			}
		case "checkpoint":
			if checkpoints[v] == nil {
				checkpoints[v] = &checkpointParts{}
			}
			checkpoints[v].add(rel)
		}
	}
	if cutoffCommit < 0 {
		return 0, nil
	}
	cutoffCP, cpFiles := int64(-1), []string(nil)
	for _, v := range slices.Backward(slices.Sorted(maps.Keys(checkpoints))) {
		if f := checkpoints[v].files(t.name, v); v <= cutoffCommit && f != nil {
			cutoffCP, cpFiles = v, f
			break
		}
	}
	if cutoffCP < 0 {
		return 0, nil
	}
	// The cutoff checkpoint must be readable before anything it replaces
	// goes (read once per checkpoint: the cutoff moves a few times a day).
	id := objectIDs(objs, cpFiles)
	if id != t.readableCP {
		if err := checkpointReadable(ctx, t.l, t.name, cutoffCP, cpFiles); err != nil {
			return 0, fmt.Errorf("cleaning the log of %s: %w", t.name, err)
		}
		t.readableCP = id
	}
	n := 0
	for _, e := range entries {
		del := e.version < cutoffCP
		if e.kind == "compacted" {
			del = e.version <= cutoffCP
		}
		if !del {
			continue
		}
		if err := t.l.Delete(ctx, e.name); err != nil && !errors.Is(err, lake.ErrNotFound) {
			return n, fmt.Errorf("cleaning the log of %s: %w", t.name, err)
		}
		n++
	}
	k, err := t.cleanupSidecars(ctx, cutoffCP)
	n += k
	if err != nil {
		return n, fmt.Errorf("cleaning the log of %s: %w", t.name, err)
	}
	return n, nil
}

// checkpointReadable reads checkpoint v of table (files: its objects) as Load
// would, every add and remove checked but none kept: the table's whole
// state is never in memory at once for it (log cleanup checks the cutoff
// checkpoint this way before deleting what it replaces).
func checkpointReadable(ctx context.Context, l lake.Lake, table string, v int64, files []string) error {
	s := newSnapshot()
	s.checkOnly = true
	if err := s.readCheckpoint(ctx, l, table, v, files); err != nil {
		return err
	}
	return s.complete()
}

// objectID identifies an object by name, size and modification time.
func objectID(o lake.Object) string {
	return o.Name + "/" + strconv.FormatInt(o.Size, 10) + "/" + strconv.FormatInt(o.ModTime.UnixNano(), 10) + ";"
}

// objectIDs identifies the objects names among objs.
func objectIDs(objs []lake.Object, names []string) string {
	var b strings.Builder
	for _, o := range objs {
		if slices.Contains(names, o.Name) {
			b.WriteString(objectID(o))
		}
	}
	return b.String()
}

// cleanupSidecars is steps 4 and 5 of the protocol's metadata cleanup: the
// sidecar files no remaining checkpoint references are deleted, except
// those less than a day old as of midnight UTC (an in-progress checkpoint
// may be about to reference them). Sidecars are shared by checkpoints
// (checkpoint_v2.go reuses them), so every remaining checkpoint's
// top-level file is read; if one cannot be, nothing is deleted.
func (t *Table) cleanupSidecars(ctx context.Context, cutoffCP int64) (int, error) {
	objs, err := t.l.List(ctx, sidecarDir(t.name))
	if err != nil || len(objs) == 0 {
		return 0, err
	}
	midnight := t.opts.Now().UTC().Truncate(24 * time.Hour)
	var old []lake.Object
	for _, o := range objs {
		if rel := strings.TrimPrefix(o.Name, sidecarDir(t.name)); !strings.Contains(rel, "/") && o.ModTime.Before(midnight.Add(-24*time.Hour)) {
			old = append(old, o)
		}
	}
	if len(old) == 0 {
		return 0, nil
	}
	// The checkpoints that remain, listed again: another writer may have
	// written one since the listing above.
	logObjs, err := t.l.List(ctx, LogDir(t.name))
	if err != nil {
		return 0, err
	}
	referenced := map[string]bool{}
	seen := map[string][]string{}
	for _, o := range logObjs {
		rel := strings.TrimPrefix(o.Name, LogDir(t.name))
		v, kind, ok := parseLogName(rel)
		if strings.Contains(rel, "/") || !ok || kind != "checkpoint" || v < cutoffCP {
			continue
		}
		// A checkpoint's file is not rewritten (a classic-named one may be
		// replaced by another writer's: then its size or time differs).
		id := objectID(o)
		refs, cached := t.sidecarRefs[id]
		if !cached {
			err := eachCheckpointAction(ctx, t.l, []string{o.Name}, func(a Action) error {
				if a.Sidecar != nil {
					name, err := sidecarName(t.name, a.Sidecar.Path)
					if err != nil {
						return err
					}
					refs = append(refs, name)
				}
				return nil
			})
			if errors.Is(err, lake.ErrNotFound) {
				continue // deleted meanwhile (by another cleanup)
			}
			if err != nil {
				return 0, fmt.Errorf("reading the sidecars of checkpoint %s: %w", rel, err)
			}
		}
		seen[id] = refs
		for _, r := range refs {
			referenced[r] = true
		}
	}
	t.sidecarRefs = seen
	n := 0
	for _, o := range old {
		if referenced[o.Name] {
			continue
		}
		if err := t.l.Delete(ctx, o.Name); err != nil && !errors.Is(err, lake.ErrNotFound) {
			return n, err
		}
		n++
	}
	return n, nil
}
