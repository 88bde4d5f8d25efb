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
}

// CheckpointStats returns what the Table knows of its last checkpoint.
func (t *Table) CheckpointStats() CheckpointStats {
	return CheckpointStats{Version: t.snap.checkpoint, Bytes: t.snap.checkpointBytes, Tombstones: t.snap.NumTombstones()}
}

// Checkpoint writes a classic checkpoint of the current version and
// _last_checkpoint. Tombstones older than the table's
// delta.deletedFileRetentionDuration are left out (they have expired; VACUUM
// may delete their files). A Table does not hold the tombstones of the
// checkpoint it started from in memory: they are streamed from that
// checkpoint into the new one, so memory holds only the tombstones of the
// commits since.
func (t *Table) Checkpoint(ctx context.Context) error {
	cutoff := t.opts.Now().Add(-t.snap.Retention().DeletedFiles).UnixMilli()
	for p, r := range t.snap.tombstones {
		if r.DeletionTimestamp < cutoff {
			delete(t.snap.tombstones, p)
		}
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[cpRow](&buf, WriterOptions(nil)...)
	head := t.snap.headRows()
	if _, err := w.Write(head); err != nil {
		return fmt.Errorf("checkpointing %s: encoding: %w", t.name, err)
	}
	n := int64(len(head))
	var tombs int64
	if t.snap.lean && t.snap.carried > 0 && t.snap.checkpoint >= 0 {
		k, err := t.carryTombstones(ctx, w, cutoff)
		if err != nil {
			return fmt.Errorf("checkpointing %s: %w", t.name, err)
		}
		tombs += k
	}
	rows := make([]cpRow, 0, 256)
	for _, p := range slices.Sorted(maps.Keys(t.snap.tombstones)) {
		rows = append(rows, removeRow(t.snap.tombstones[p]))
		if len(rows) == cap(rows) {
			if _, err := w.Write(rows); err != nil {
				return fmt.Errorf("checkpointing %s: encoding: %w", t.name, err)
			}
			tombs += int64(len(rows))
			rows = rows[:0]
		}
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
	if err := t.l.Put(ctx, CheckpointName(t.name, v), buf.Bytes()); err != nil {
		return fmt.Errorf("checkpointing %s at %d: %w", t.name, v, err)
	}
	if err := t.l.Put(ctx, LastCheckpointName(t.name), encodeLastCheckpoint(LastCheckpoint{Version: v, Size: n})); err != nil {
		return fmt.Errorf("checkpointing %s at %d: %w", t.name, v, err)
	}
	t.lastCP, t.lastCPBytes, t.tailBytes, t.lastCPTime = v, int64(buf.Len()), 0, t.opts.Now()
	t.snap.checkpoint, t.snap.checkpointBytes = v, int64(buf.Len())
	t.snap.checkpointFiles = []string{CheckpointName(t.name, v)}
	if t.snap.lean {
		// Everything is in the checkpoint now: memory keeps the count.
		t.snap.carried = tombs
		clear(t.snap.tombstones)
	}
	return nil
}

// carryTombstones copies the unexpired remove actions of the snapshot's
// checkpoint into w, except those of files added again or removed again
// since (the snapshot's own tombstones win), and returns how many.
func (t *Table) carryTombstones(ctx context.Context, w *parquet.GenericWriter[cpRow], cutoff int64) (n int64, err error) {
	out := make([]cpRow, 0, 256)
	flush := func() error {
		if _, err := w.Write(out); err != nil {
			return fmt.Errorf("encoding checkpoint: %w", err)
		}
		n += int64(len(out))
		out = out[:0]
		return ctx.Err()
	}
	err = t.snap.eachCheckpointAction(ctx, t.l, func(a Action) error {
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
		out = append(out, removeRow(*rm))
		if len(out) == cap(out) {
			return flush()
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	return n, flush()
}

func removeRow(r RemoveFile) cpRow {
	ext := r.ExtendedFileMetadata
	ts := r.DeletionTimestamp
	return cpRow{Remove: &cpRemove{Path: r.Path, DeletionTimestamp: &ts, DataChange: false,
		ExtendedFileMetadata: &ext, PartitionValues: r.PartitionValues, Size: optInt(r.Size), DeletionVector: cpDVOf(r.DeletionVector)}}
}

// headRows are a checkpoint's rows other than tombstones: protocol,
// metadata, txns and the live files.
func (s *Snapshot) headRows() []cpRow {
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
	for _, a := range s.Files() {
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
