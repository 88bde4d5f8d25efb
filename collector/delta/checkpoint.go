package delta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// checkpointInterval is the table's delta.checkpointInterval, or the
// Table's option when the table does not set it.
func (t *Table) checkpointInterval() int {
	if n, err := strconv.Atoi(strings.TrimSpace(t.snap.Metadata.Configuration[PropCheckpointInterval])); err == nil && n > 0 {
		return n
	}
	return t.opts.CheckpointInterval
}

// checkpointDue is the checkpoint policy: after delta.checkpointInterval
// commits (with CheckpointBySize, once those commits also hold as many
// bytes as the last checkpoint), or when the last checkpoint is older than
// CheckpointMaxAge.
func (t *Table) checkpointDue() bool {
	since := t.snap.Version - t.lastCP
	if since <= 0 {
		return false
	}
	if t.opts.CheckpointMaxAge > 0 && t.opts.Now().Sub(t.lastCPTime) >= t.opts.CheckpointMaxAge {
		return true
	}
	if since < int64(t.checkpointInterval()) {
		return false
	}
	return !t.opts.CheckpointBySize || t.tailBytes >= t.lastCPBytes
}

func (t *Table) maybeCheckpoint(ctx context.Context) {
	if !t.checkpointDue() {
		return
	}
	if err := t.Checkpoint(ctx); err != nil {
		t.CheckpointErr = err
		return
	}
	t.CheckpointErr = nil
}

// CheckpointStats describes the last checkpoint a Table wrote or loaded.
type CheckpointStats struct {
	Version    int64 // -1: none
	Bytes      int64
	Tombstones int64 // remove actions the table keeps (in it and after it)
	Sidecars   int   // sidecar files it references (V2)
	// Written are the objects this Table wrote for it (a V2 checkpoint's
	// new sidecars and top-level file; reused sidecars are not listed).
	Written []string
}

// CheckpointStats returns what the Table knows of its last checkpoint.
func (t *Table) CheckpointStats() CheckpointStats {
	return CheckpointStats{Version: t.snap.checkpoint, Bytes: t.snap.checkpointBytes, Tombstones: t.snap.NumTombstones(),
		Sidecars: len(t.snap.sidecars), Written: t.lastWritten}
}

// Checkpoint writes a checkpoint of the current version and
// _last_checkpoint: a V2-spec checkpoint with sidecars when the table asks
// for them (the v2Checkpoint feature and delta.checkpointPolicy=v2,
// checkpoint_v2.go), else a classic V1-spec one. Tombstones older than
// the table's delta.deletedFileRetentionDuration are left out (they have
// expired; VACUUM may delete their files). A Table does not hold the
// tombstones of the checkpoint it started from in memory: they are
// streamed from that checkpoint into the new one, so memory holds only the
// tombstones of the commits since.
func (t *Table) Checkpoint(ctx context.Context) error {
	cutoff := t.opts.Now().Add(-t.snap.Retention().DeletedFiles).UnixMilli()
	for p, r := range t.snap.tombstones {
		if r.DeletionTimestamp < cutoff {
			delete(t.snap.tombstones, p)
		}
	}
	if t.snap.v2Checkpoints() {
		return t.checkpointV2(ctx, cutoff)
	}
	// A classic checkpoint names no sidecars: statistics dropped because
	// a sidecar held them come back into memory first (shed.go).
	if err := t.snap.unsealAll(ctx, t.l); err != nil {
		return fmt.Errorf("checkpointing %s: %w", t.name, err)
	}
	if err := t.restoreStats(ctx); err != nil {
		return fmt.Errorf("checkpointing %s: %w", t.name, err)
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[cpRow](&buf, WriterOptions(nil)...)
	head := t.snap.headRows()
	if _, err := w.Write(head); err != nil {
		return fmt.Errorf("checkpointing %s: encoding: %w", t.name, err)
	}
	n := int64(len(head))
	rows := make([]cpRow, 0, 256)
	var tombs int64
	emit := func(r RemoveFile) error {
		rows = append(rows, removeRow(r))
		if len(rows) < cap(rows) {
			return nil
		}
		if _, err := w.Write(rows); err != nil {
			return fmt.Errorf("encoding: %w", err)
		}
		tombs += int64(len(rows))
		rows = rows[:0]
		return ctx.Err()
	}
	if err := t.eachTombstone(ctx, cutoff, emit); err != nil {
		return fmt.Errorf("checkpointing %s: %w", t.name, err)
	}
	if _, err := w.Write(rows); err != nil {
		return fmt.Errorf("checkpointing %s: encoding: %w", t.name, err)
	}
	tombs += int64(len(rows))
	if err := w.Close(); err != nil {
		return fmt.Errorf("checkpointing %s: encoding: %w", t.name, err)
	}
	n += tombs
	v := t.snap.Version
	name := CheckpointName(t.name, v)
	if err := t.l.Put(ctx, name, buf.Bytes()); err != nil {
		return fmt.Errorf("checkpointing %s at %d: %w", t.name, v, err)
	}
	lc := LastCheckpoint{Version: v, Size: n, SizeInBytes: int64(buf.Len()), NumOfAddFiles: int64(len(t.snap.files))}
	if err := t.l.Put(ctx, LastCheckpointName(t.name), encodeLastCheckpoint(lc)); err != nil {
		return fmt.Errorf("checkpointing %s at %d: %w", t.name, v, err)
	}
	var tombFiles []string
	if tombs > 0 {
		tombFiles = []string{name}
	}
	t.checkpointed(v, int64(buf.Len()), int64(buf.Len()), []string{name}, tombs, tombFiles, []string{name})
	t.snap.sidecars = nil
	clear(t.snap.origin)
	return nil
}

// checkpointed records that checkpoint v was written: written bytes of
// new objects (the objects in written), total bytes with reused sidecars,
// all its objects (files), tombs tombstones in tombFiles.
func (t *Table) checkpointed(v, writtenBytes, total int64, files []string, tombs int64, tombFiles, written []string) {
	// The by-size policy weighs the bytes a checkpoint costs to write.
	t.lastCP, t.lastCPBytes, t.tailBytes, t.lastCPTime = v, writtenBytes, 0, t.opts.Now()
	t.snap.checkpoint, t.snap.checkpointBytes = v, total
	t.snap.checkpointFiles = files
	t.snap.tombFiles = tombFiles
	t.lastWritten = written
	if t.snap.lean {
		// Everything is in the checkpoint now: memory keeps the count.
		t.snap.carried = tombs
		clear(t.snap.tombstones)
	}
}

// eachTombstone calls emit with every unexpired tombstone the table keeps,
// sorted within each source: those of the checkpoint it started from
// (streamed from that checkpoint's files) except those of files added or
// removed again since, then those in memory.
func (t *Table) eachTombstone(ctx context.Context, cutoff int64, emit func(RemoveFile) error) error {
	if t.snap.lean && t.snap.carried > 0 && t.snap.checkpoint >= 0 {
		if err := t.carryTombstones(ctx, cutoff, emit); err != nil {
			return err
		}
	}
	for _, p := range slices.Sorted(maps.Keys(t.snap.tombstones)) {
		if err := emit(t.snap.tombstones[p]); err != nil {
			return err
		}
	}
	return nil
}

// carryTombstones calls emit with the unexpired remove actions of the
// snapshot's checkpoint, except those of files added again or removed
// again since (the snapshot's own tombstones win).
func (t *Table) carryTombstones(ctx context.Context, cutoff int64, emit func(RemoveFile) error) error {
	return eachCheckpointAction(ctx, t.l, t.snap.tombFiles, func(a Action) error {
		rm := a.Remove
		if rm == nil || rm.DeletionTimestamp < cutoff {
			return nil
		}
		p, err := fileKey(rm.Path, rm.DeletionVector)
		if err != nil {
			return err
		}
		if _, ok := t.snap.files[p]; ok {
			return nil
		}
		if _, ok := t.snap.tombstones[p]; ok {
			return nil
		}
		return emit(*rm)
	})
}

func removeRow(r RemoveFile) cpRow {
	ext := r.ExtendedFileMetadata
	ts := r.DeletionTimestamp
	return cpRow{Remove: &cpRemove{Path: r.Path, DeletionTimestamp: &ts, DataChange: false,
		ExtendedFileMetadata: &ext, PartitionValues: r.PartitionValues, Size: optInt(r.Size), DeletionVector: cpDVOf(r.DeletionVector)}}
}

// headRows are a checkpoint's rows other than tombstones: protocol,
// metadata, txns, domain metadata and the live files.
func (s *Snapshot) headRows() []cpRow { return s.checkpointRows(true) }

// checkpointRows are protocol, metadata, txns, domain metadata and, with
// files, the live files.
func (s *Snapshot) checkpointRows(files bool) []cpRow {
	rows := []cpRow{
		{Protocol: &cpProtocol{MinReaderVersion: int32(s.Protocol.MinReaderVersion), MinWriterVersion: int32(s.Protocol.MinWriterVersion),
			ReaderFeatures: s.Protocol.ReaderFeatures, WriterFeatures: s.Protocol.WriterFeatures}},
		{MetaData: &cpMetadata{
			ID: s.Metadata.ID, Name: optStr(s.Metadata.Name), Description: optStr(s.Metadata.Description),
			Format:       cpFormat{Provider: s.Metadata.Format.Provider, Options: nonNil(s.Metadata.Format.Options)},
			SchemaString: s.Metadata.SchemaString, PartitionColumns: append([]string{}, s.Metadata.PartitionColumns...),
			CreatedTime: optInt(s.Metadata.CreatedTime), Configuration: nonNil(s.Metadata.Configuration),
		}},
	}
	for _, id := range slices.Sorted(maps.Keys(s.txns)) {
		t := s.txns[id]
		rows = append(rows, cpRow{Txn: &cpTxn{AppID: t.AppID, Version: t.Version, LastUpdated: optInt(t.LastUpdated)}})
	}
	var live []AddFile
	if files {
		live = s.Files()
	}
	for _, a := range live {
		rows = append(rows, cpRow{Add: &cpAdd{Path: a.Path, PartitionValues: nonNil(a.PartitionValues), Size: a.Size,
			ModificationTime: a.ModificationTime, DataChange: false, Stats: optStr(a.Stats), Tags: a.Tags, DeletionVector: cpDVOf(a.DeletionVector)}})
	}
	for _, d := range slices.Sorted(maps.Keys(s.domains)) {
		dm := s.domains[d]
		rows = append(rows, cpRow{Domain: &cpDomain{Domain: dm.Domain, Configuration: dm.Configuration}})
	}
	return rows
}

// addProperties commits the Options' properties the table lacks (pilake's
// retention defaults on a table created before them, or by another engine).
// Another writer doing the same at once makes the commit conflict: the
// table is read again and the check repeated.
func (t *Table) addProperties(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		conf := t.snap.Metadata.Configuration
		var missing bool
		for k := range t.opts.Properties {
			if _, ok := conf[k]; !ok {
				missing = true
			}
		}
		if !missing {
			return nil
		}
		md := t.snap.Metadata
		md.Configuration = maps.Clone(nonNil(conf))
		for k, v := range t.opts.Properties {
			if _, ok := md.Configuration[k]; !ok {
				md.Configuration[k] = v
			}
		}
		_, err := t.Commit(ctx, []Action{{MetaData: &md}}, "SET TBLPROPERTIES")
		if err == nil || !errors.Is(err, ErrConflict) || attempt >= 3 {
			return err
		}
		if err := t.Refresh(ctx); err != nil {
			return err
		}
	}
}
