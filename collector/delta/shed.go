package delta

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// A writer (Table) holds every live file of its table in memory, and a
// table that keeps its history has ever more of them: about 3 KB each with
// their statistics, the largest part. Files whose add sits unchanged in a
// sidecar of a closed group (written before yesterday: sidecarGroup's
// blocks of days) are final: compaction never rewrites a day file, an hour
// file only into its day's file while that day is recent, and an epoch
// file still alone in its hour two days on (the straggler a watermark
// leaves after its hour was compacted, about one a day) is left as it is.
// Of those the writer keeps only what it needs (path, size, times, shared
// partitionValues and tags maps) and drops the statistics, which it reads
// back from the sidecar when it writes that group's files again (a new
// block, another writer's change); then it drops the files themselves
// (seal.go). Compaction leaves such files alone (fileTime finds no
// statistics), and Files of a Table's snapshot gives them without Stats.

// closedGroup reports whether g, a TagSidecarGroup value, is a block of
// days older than yesterday ("8d-…", "64d-…", "512d-…"), not a day.
func closedGroup(g string) bool {
	i := strings.Index(g, "d-")
	if i <= 0 {
		return false
	}
	for _, c := range g[:i] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// shedCold drops the statistics of a lean snapshot's live files described
// above, and makes equal partitionValues and tags maps of those files one
// map each.
func (s *Snapshot) shedCold() {
	if !s.lean || len(s.origin) == 0 {
		return
	}
	shared := map[string]map[string]string{}
	intern := func(kind string, m map[string]string) map[string]string {
		if len(m) == 0 {
			return m
		}
		var b strings.Builder
		b.WriteString(kind)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			b.WriteString("\x00" + k + "\x00" + m[k])
		}
		if c, ok := shared[b.String()]; ok {
			return c
		}
		shared[b.String()] = m
		return m
	}
	for k, name := range s.origin {
		f, ok := s.files[k]
		if !ok || f.DeletionVector != nil {
			continue
		}
		if !f.shed {
			if !closedGroup(s.sidecars[name].action.Tags[TagSidecarGroup]) {
				continue
			}
			f.Stats, f.shed = "", true
			s.shed++
			if f.Path == k {
				f.Path = k // one string for the key and the path
			}
		}
		f.PartitionValues = intern("p", f.PartitionValues)
		f.Tags = intern("t", f.Tags)
		s.files[k] = f
	}
	s.shared = shared
	s.seal()
}

// unshed forgets that file key k's statistics were dropped (an add or
// remove of it is being applied).
func (s *Snapshot) unshed(k string) {
	if f, ok := s.files[k]; ok && f.shed {
		s.shed--
	}
}

// withStats returns the live files of keys with their statistics: those a
// lean snapshot dropped are read back from the sidecars that hold them.
func (t *Table) withStats(ctx context.Context, keys []string) ([]AddFile, error) {
	s := t.snap
	out := make([]AddFile, len(keys))
	want := map[string]map[string]int{} // sidecar → key → index in out
	for i, k := range keys {
		f := s.files[k]
		out[i] = f
		if !f.shed {
			continue
		}
		name := s.origin[k]
		if want[name] == nil {
			want[name] = map[string]int{}
		}
		want[name][k] = i
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		idx := want[name]
		err := eachCheckpointAction(ctx, t.l, []string{name}, func(a Action) error {
			if a.Add == nil {
				return nil
			}
			k, err := fileKey(a.Add.Path, a.Add.DeletionVector)
			if err != nil {
				return err
			}
			if i, ok := idx[k]; ok {
				out[i].Stats = a.Add.Stats
				out[i].shed = false
				delete(idx, k)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(idx) > 0 {
			return nil, fmt.Errorf("%w: sidecar %s no longer holds %d live files it held", ErrCorruptLog, name, len(idx))
		}
	}
	return out, nil
}

// restoreStats reads back every statistic the snapshot dropped (before a
// classic checkpoint, which names no sidecar to find them in later).
func (t *Table) restoreStats(ctx context.Context) error {
	if t.snap.shed == 0 {
		return nil
	}
	var keys []string
	for k, f := range t.snap.files {
		if f.shed {
			keys = append(keys, k)
		}
	}
	files, err := t.withStats(ctx, keys)
	if err != nil {
		return err
	}
	for i, k := range keys {
		t.snap.files[k] = files[i]
	}
	t.snap.shed = 0
	return nil
}

// ForgetStats makes the snapshot follow only the table's live files, for a
// reader that keeps a snapshot to follow the files (LoadAfter) and has
// taken what it needs of their statistics (collector/rollup keeps each
// file's time span): it drops the statistics of the live files, their
// partitionValues maps where empty, and every tombstone, and the updates
// LoadAfter applies to it from then on keep no tombstones either (a reader
// needs none; silver's would be ~86 k at 100 devices). Files then returns
// every file without Stats, including those later updates add (the
// actions Update returns still carry them). Such a snapshot must not be
// checkpointed.
func (s *Snapshot) ForgetStats() {
	s.filesOnly = true
	clear(s.tombstones)
	for k, f := range s.files {
		if f.Stats == "" && (f.PartitionValues == nil || len(f.PartitionValues) > 0) {
			continue
		}
		f.Stats = ""
		if len(f.PartitionValues) == 0 {
			f.PartitionValues = nil
		}
		s.files[k] = f
	}
}

// ForgetFiles drops from a snapshot that follows only the files
// (ForgetStats) those drop reports true for: a reader that knows it will
// never read them again (collector/rollup: files entirely before its
// frontier) keeps its memory to the files it still needs, not the
// source's history. Files, All and NumFiles then give only the files kept;
// a later remove of a dropped file is a no-op, as for any file the
// snapshot does not hold. It panics on a snapshot that keeps statistics.
func (s *Snapshot) ForgetFiles(drop func(AddFile) bool) {
	if !s.filesOnly {
		panic("delta: ForgetFiles on a snapshot that keeps statistics (call ForgetStats first)")
	}
	for k, f := range s.files {
		if drop(f) {
			s.liveBytes -= f.Size
			delete(s.files, k)
		}
	}
}
