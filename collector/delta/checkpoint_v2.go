package delta

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
)

// PropCheckpointPolicy is the table property that chooses the checkpoint
// kind: "classic" (Delta's default: V1-spec checkpoints, every live file
// and tombstone in one file) or "v2" (V2-spec checkpoints with sidecars;
// the table must have the v2Checkpoint reader and writer feature, reader
// version 3 and writer version 7). It is the property Databricks and Delta
// Lake use (ALTER TABLE t SET TBLPROPERTIES ('delta.checkpointPolicy' = 'v2')).
const PropCheckpointPolicy = "delta.checkpointPolicy"

// Checkpoint policies (values of PropCheckpointPolicy and
// Options.CheckpointPolicy).
const (
	CheckpointClassic = "classic"
	CheckpointV2      = "v2"
)

// TagSidecarGroup is the sidecar action tag naming the group of live files
// a sidecar pilake wrote holds (a UTC day or month of the files'
// modificationTime). It is a hint for reuse only: whether a sidecar can be
// reused is decided from what the log says since, never from the tag.
const TagSidecarGroup = "pilake.group"

// sidecarRef is a sidecar file of the checkpoint a snapshot was read from or
// written as.
type sidecarRef struct {
	action  Sidecar
	adds    int64 // add actions it holds
	removes bool  // whether it holds remove actions
}

// v2Checkpoints reports whether checkpoints of the table are V2-spec ones:
// the v2Checkpoint feature for readers and writers and
// delta.checkpointPolicy=v2. A table with the feature and the classic
// policy gets V1-spec classic checkpoints, which the protocol allows.
func (s *Snapshot) v2Checkpoints() bool {
	p := s.Protocol
	return p.MinReaderVersion >= 3 && p.MinWriterVersion >= 7 &&
		slices.Contains(p.ReaderFeatures, "v2Checkpoint") && slices.Contains(p.WriterFeatures, "v2Checkpoint") &&
		strings.TrimSpace(s.Metadata.Configuration[PropCheckpointPolicy]) == CheckpointV2
}

// v2Protocol is the protocol of a new table with V2 checkpoints: reader 3
// with v2Checkpoint; writer 7 with v2Checkpoint and what writer version 2
// (pilake's classic tables) implies, appendOnly and invariants.
func v2Protocol() Protocol {
	return Protocol{MinReaderVersion: 3, MinWriterVersion: 7,
		ReaderFeatures: []string{"v2Checkpoint"}, WriterFeatures: []string{"appendOnly", "invariants", "v2Checkpoint"}}
}

// sidecarGroup is the group of a live file whose add has modificationTime
// modMS, at now. Files of a group share a sidecar. Files stop changing once
// compaction has rewritten them (hour and day files are final, and a day's
// compaction is done early the next day), so: files of today and
// yesterday are grouped by day (today's sidecar is rewritten at every
// checkpoint, yesterday's while its day is compacted); older files by
// blocks of 8 days (the current block is rewritten once a day, as a day
// joins it), blocks of 64 days once such a block is entirely older than
// yesterday, and of 512 days likewise. A sidecar is thus rewritten a
// bounded number of times in its life, and a checkpoint references at most
// 2 + 8 + 8 sidecars plus one per 512 days (each sidecar costs a reader a
// file to open: Load's time grows with their number).
func sidecarGroup(modMS int64, now time.Time) string {
	const dayMS = 24 * 60 * 60 * 1000
	d := floorDiv(modMS, dayMS)
	today := floorDiv(now.UnixMilli(), dayMS)
	if d >= today-1 {
		return time.UnixMilli(d * dayMS).UTC().Format("2006-01-02")
	}
	for _, w := range []int64{512, 64} {
		if b := floorDiv(d, w); (b+1)*w <= today-1 {
			return fmt.Sprintf("%dd-%d", w, b)
		}
	}
	return fmt.Sprintf("8d-%d", floorDiv(d, 8))
}

// cpSidecarRow is a row of a sidecar file: an add or a remove.
type cpSidecarRow struct {
	Add    *cpAdd    `parquet:"add,optional"`
	Remove *cpRemove `parquet:"remove,optional"`
}

func addRow(a AddFile) *cpAdd {
	return &cpAdd{Path: a.Path, PartitionValues: nonNil(a.PartitionValues), Size: a.Size,
		ModificationTime: a.ModificationTime, DataChange: false, Stats: optStr(a.Stats), Tags: a.Tags, DeletionVector: cpDVOf(a.DeletionVector)}
}

// sidecarDir is the directory of table's sidecar files.
func sidecarDir(table string) string { return LogDir(table) + "_sidecars/" }

// checkpointV2 writes a V2-spec checkpoint of the current version under the
// classic name (%020d.checkpoint.parquet: readers that do not know V2
// checkpoints find it, read the protocol and refuse the table cleanly, as
// the protocol intends) and its sidecars, then _last_checkpoint.
//
// Live files are grouped by sidecarGroup. A group's sidecar from the
// previous checkpoint is reused as it is when it holds exactly the group's
// files and no commit since has added or removed any of them (the
// snapshot's origin map, which every add or remove clears), and it still
// exists; otherwise the group gets a new sidecar. Tombstones go into one
// new sidecar each time (their number is bounded by the retention). So the
// bytes a checkpoint writes are those of the groups that changed (today's
// and yesterday's files), not the table's history, and the checkpoint is
// still exactly the reconciled state.
//
// Order: sidecars, then the top-level file, then _last_checkpoint. A crash
// in between leaves unreferenced sidecars (CleanupLog deletes them once a
// day old) or a checkpoint _last_checkpoint does not name yet (readers find
// the previous one); never a checkpoint naming a missing sidecar.
func (t *Table) checkpointV2(ctx context.Context, cutoff int64) error {
	s := t.snap
	v := s.Version
	now := t.opts.Now()
	// Sealed sidecars (seal.go) are reused as they are, unless their group
	// must be written again: its block joined a larger one, or files of
	// the group are in memory; those come back into memory first.
	for changed := len(s.sealed) > 0; changed; {
		changed = false
		inMemory := map[string]bool{}
		for _, f := range s.files {
			inMemory[sidecarGroup(f.ModificationTime, now)] = true
		}
		for _, name := range s.sealedNames() {
			g := s.sealed[name].group
			if ng, ok := blockGroup(g, now); !ok || ng != g || inMemory[g] {
				if err := s.unseal(ctx, t.l, name); err != nil {
					return fmt.Errorf("checkpointing %s at %d: %w", t.name, v, err)
				}
				changed = true
			}
		}
	}
	groups := map[string][]string{}
	for k, f := range s.files {
		g := sidecarGroup(f.ModificationTime, now)
		groups[g] = append(groups[g], k)
	}
	// The previous checkpoint's sidecars of pilake's groups (a group named
	// twice, or a sidecar with tombstones, is never reused).
	prev, dup := map[string]string{}, map[string]bool{}
	for name, r := range s.sidecars {
		g := r.action.Tags[TagSidecarGroup]
		if g == "" || r.removes {
			continue
		}
		if _, ok := prev[g]; ok {
			dup[g] = true
		}
		prev[g] = name
	}
	var present map[string]bool // _sidecars/, listed once when a sidecar may be reused
	exists := func(name string) (bool, error) {
		if present == nil {
			objs, err := t.l.List(ctx, sidecarDir(t.name))
			if err != nil {
				return false, err
			}
			present = map[string]bool{}
			for _, o := range objs {
				present[o.Name] = true
			}
		}
		return present[name], nil
	}
	reusable := func(g string, keys []string) (string, bool, error) {
		name, ok := prev[g]
		if !ok || dup[g] || s.sidecars[name].adds != int64(len(keys)) {
			return "", false, nil
		}
		for _, k := range keys {
			if s.origin[k] != name {
				return "", false, nil
			}
		}
		ok, err := exists(name)
		return name, ok, err
	}
	var (
		sidecars           []Sidecar
		refs               = map[string]sidecarRef{}
		origin             = map[string]string{}
		files, written     []string
		writtenB, totalB   int64
		sidecarN, sidecarB int64
	)
	record := func(name string, sc Sidecar, adds int64, removes bool) {
		sidecars = append(sidecars, sc)
		refs[name] = sidecarRef{action: sc, adds: adds, removes: removes}
		files = append(files, name)
		totalB += sc.SizeInBytes
		sidecarB += sc.SizeInBytes
	}
	for _, name := range s.sealedNames() {
		ok, err := exists(name)
		if err != nil {
			return fmt.Errorf("checkpointing %s: %w", t.name, err)
		}
		if !ok {
			return fmt.Errorf("checkpointing %s at %d: %w: sidecar %s, which holds %d live files, is gone", t.name, v, ErrCorruptLog, name, s.sealed[name].n)
		}
		n := int64(s.sealed[name].n)
		record(name, s.sidecars[name].action, n, false)
		sidecarN += n
	}
	for _, g := range slices.Sorted(maps.Keys(groups)) {
		keys := groups[g]
		name, ok, err := reusable(g, keys)
		if err != nil {
			return fmt.Errorf("checkpointing %s: %w", t.name, err)
		}
		if ok {
			record(name, s.sidecars[name].action, int64(len(keys)), false)
			sidecarN += int64(len(keys))
			for _, k := range keys {
				origin[k] = name
			}
			continue
		}
		slices.Sort(keys)
		adds, err := t.withStats(ctx, keys)
		if err != nil {
			return fmt.Errorf("checkpointing %s at %d: %w", t.name, v, err)
		}
		rows := make([]cpSidecarRow, len(keys))
		for i := range adds {
			rows[i] = cpSidecarRow{Add: addRow(adds[i])}
		}
		name, sc, err := t.putSidecar(ctx, g, now, func(w *parquet.GenericWriter[cpSidecarRow]) error {
			_, err := w.Write(rows)
			return err
		})
		if err != nil {
			return fmt.Errorf("checkpointing %s at %d: %w", t.name, v, err)
		}
		record(name, sc, int64(len(keys)), false)
		written = append(written, name)
		writtenB += sc.SizeInBytes
		sidecarN += int64(len(keys))
		for _, k := range keys {
			origin[k] = name
		}
	}
	// Tombstones: one new sidecar (streamed from the previous checkpoint's).
	var tombs int64
	var tombFiles []string
	if s.NumTombstones() > 0 {
		name, sc, err := t.putSidecar(ctx, "", now, func(w *parquet.GenericWriter[cpSidecarRow]) error {
			rows := make([]cpSidecarRow, 0, 256)
			flush := func() error {
				_, err := w.Write(rows)
				tombs += int64(len(rows))
				rows = rows[:0]
				return err
			}
			err := t.eachTombstone(ctx, cutoff, func(r RemoveFile) error {
				rows = append(rows, cpSidecarRow{Remove: removeRow(r).Remove})
				if len(rows) == cap(rows) {
					return flush()
				}
				return nil
			})
			if err != nil {
				return err
			}
			return flush()
		})
		if err != nil {
			return fmt.Errorf("checkpointing %s at %d: %w", t.name, v, err)
		}
		if tombs > 0 {
			record(name, sc, 0, true)
			written = append(written, name)
			writtenB += sc.SizeInBytes
			sidecarN += tombs
			tombFiles = []string{name}
		} else {
			// Every carried tombstone had expired: the empty file goes.
			_ = t.l.Delete(ctx, name)
		}
	}
	// The top-level file: checkpointMetadata, the non-file actions, the
	// sidecars.
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[cpReadRow](&buf, WriterOptions(nil)...)
	rows := []cpReadRow{{CPMeta: &cpCheckpointMetadata{Version: v, Tags: map[string]string{
		"sidecarNumActions":  strconv.FormatInt(sidecarN, 10),
		"sidecarSizeInBytes": strconv.FormatInt(sidecarB, 10),
		"numOfAddFiles":      strconv.Itoa(s.NumFiles()),
	}}}}
	for _, r := range s.checkpointRows(false) {
		rows = append(rows, cpReadRow{Txn: r.Txn, MetaData: r.MetaData, Protocol: r.Protocol, Domain: r.Domain})
	}
	for _, sc := range sidecars {
		rows = append(rows, cpReadRow{Sidecar: &cpSidecar{Path: sc.Path, SizeInBytes: sc.SizeInBytes, ModificationTime: sc.ModificationTime, Tags: sc.Tags}})
	}
	if _, err := w.Write(rows); err != nil {
		return fmt.Errorf("checkpointing %s: encoding: %w", t.name, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("checkpointing %s: encoding: %w", t.name, err)
	}
	top := CheckpointName(t.name, v)
	if err := t.l.Put(ctx, top, buf.Bytes()); err != nil {
		return fmt.Errorf("checkpointing %s at %d: %w", t.name, v, err)
	}
	lc := LastCheckpoint{Version: v, Size: int64(len(rows)) + sidecarN, SizeInBytes: int64(buf.Len()) + sidecarB, NumOfAddFiles: int64(s.NumFiles())}
	if err := t.l.Put(ctx, LastCheckpointName(t.name), encodeLastCheckpoint(lc)); err != nil {
		return fmt.Errorf("checkpointing %s at %d: %w", t.name, v, err)
	}
	written = append(written, top)
	t.checkpointed(v, writtenB+int64(buf.Len()), totalB+int64(buf.Len()), append([]string{top}, files...), tombs, tombFiles, written)
	s.sidecars = refs
	s.origin = origin
	s.shedCold()
	return nil
}

// putSidecar writes a new sidecar file of group g (tombstones: "") with the
// rows fill writes, and returns its object name and sidecar action.
func (t *Table) putSidecar(ctx context.Context, g string, now time.Time, fill func(*parquet.GenericWriter[cpSidecarRow]) error) (string, Sidecar, error) {
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[cpSidecarRow](&buf, WriterOptions(nil)...)
	if err := fill(w); err != nil {
		return "", Sidecar{}, fmt.Errorf("encoding sidecar: %w", err)
	}
	if err := w.Close(); err != nil {
		return "", Sidecar{}, fmt.Errorf("encoding sidecar: %w", err)
	}
	base := newUUID() + ".parquet"
	name := sidecarDir(t.name) + base
	if err := t.l.Put(ctx, name, buf.Bytes()); err != nil {
		return "", Sidecar{}, fmt.Errorf("writing sidecar: %w", err)
	}
	sc := Sidecar{Path: base, SizeInBytes: int64(buf.Len()), ModificationTime: now.UnixMilli()}
	if g != "" {
		sc.Tags = map[string]string{TagSidecarGroup: g}
	}
	return name, sc, nil
}
