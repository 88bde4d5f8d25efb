package delta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/pilake/pilake/collector/lake"
)

// ChecksumName returns the object name of the version checksum file of
// table's version v (PROTOCOL.md, Version Checksum File).
func ChecksumName(table string, v int64) string { return fmt.Sprintf("%s%020d.crc", LogDir(table), v) }

// VersionChecksum is the content of a version checksum file: the table's
// state as of one version, after action reconciliation. pilake writes the
// required fields and, where it knows them exactly, the optional
// inCommitTimestampOpt, setTransactions and domainMetadata.
type VersionChecksum struct {
	TxnID          string `json:"txnId,omitempty"`
	TableSizeBytes int64  `json:"tableSizeBytes"`
	NumFiles       int64  `json:"numFiles"`
	NumMetadata    int64  `json:"numMetadata"`
	NumProtocol    int64  `json:"numProtocol"`
	// InCommitTimestampOpt is present if and only if the table has
	// In-Commit Timestamps enabled.
	InCommitTimestampOpt *int64 `json:"inCommitTimestampOpt,omitempty"`
	// SetTransactions (every live txn) is left out when the table expires
	// txns (delta.setTransactionRetentionDuration), which pilake does not.
	SetTransactions *[]Txn            `json:"setTransactions,omitempty"`
	DomainMetadata  *[]DomainMetadata `json:"domainMetadata,omitempty"`
	Metadata        Metadata          `json:"metadata"`
	Protocol        ChecksumProtocol  `json:"protocol"`
}

// ChecksumProtocol is the protocol action as the log spells it:
// readerFeatures present (empty or not) when minReaderVersion is 3,
// writerFeatures when minWriterVersion is 7 (and either when it has
// features). Engines that validate a checksum compare it with the protocol
// they replayed, where an empty list and a missing one differ.
type ChecksumProtocol struct {
	MinReaderVersion int       `json:"minReaderVersion"`
	MinWriterVersion int       `json:"minWriterVersion"`
	ReaderFeatures   *[]string `json:"readerFeatures,omitempty"`
	WriterFeatures   *[]string `json:"writerFeatures,omitempty"`
}

func checksumProtocol(p Protocol) ChecksumProtocol {
	c := ChecksumProtocol{MinReaderVersion: p.MinReaderVersion, MinWriterVersion: p.MinWriterVersion}
	if p.MinReaderVersion >= 3 || len(p.ReaderFeatures) > 0 {
		rf := nonNilSlice(p.ReaderFeatures)
		c.ReaderFeatures = &rf
	}
	if p.MinWriterVersion >= 7 || len(p.WriterFeatures) > 0 {
		wf := nonNilSlice(p.WriterFeatures)
		c.WriterFeatures = &wf
	}
	return c
}

// checksum returns the version checksum of s's version, or false when s
// does not know the table's state exactly (a commit failed to apply to it
// partway; In-Commit Timestamps enabled but the commit's timestamp not
// known): no checksum is better than a wrong one. txnID and ict are the
// last commit's (ict 0: none).
func (s *Snapshot) checksum(txnID string, ict int64) (VersionChecksum, bool) {
	if s.partial || s.Version < 0 || s.complete() != nil {
		return VersionChecksum{}, false
	}
	c := VersionChecksum{TxnID: txnID, TableSizeBytes: s.liveBytes, NumFiles: int64(s.NumFiles()), NumMetadata: 1, NumProtocol: 1,
		Metadata: s.Metadata, Protocol: checksumProtocol(s.Protocol)}
	// Absent maps and lists are empty ones (what a reader of the commit
	// would take them for); other engines' readers expect them present.
	c.Metadata.Configuration = nonNil(c.Metadata.Configuration)
	c.Metadata.Format.Options = nonNil(c.Metadata.Format.Options)
	c.Metadata.PartitionColumns = nonNilSlice(c.Metadata.PartitionColumns)
	switch {
	case s.inCommitTimestamps() && ict != 0:
		c.InCommitTimestampOpt = &ict
	case s.inCommitTimestamps() || ict != 0:
		return VersionChecksum{}, false
	}
	if _, expires := s.Metadata.Configuration["delta.setTransactionRetentionDuration"]; !expires {
		txns := append([]Txn{}, slices.SortedFunc(maps.Values(s.txns), func(a, b Txn) int { return strings.Compare(a.AppID, b.AppID) })...)
		c.SetTransactions = &txns
	}
	domains := append([]DomainMetadata{}, slices.SortedFunc(maps.Values(s.domains), func(a, b DomainMetadata) int { return strings.Compare(a.Domain, b.Domain) })...)
	c.DomainMetadata = &domains
	return c, true
}

// writeChecksum writes the version checksum file of the version t's
// snapshot is at, which t has just committed. It is not part of the
// commit: the commit stands whatever happens here. A failure is logged and
// counted (ChecksumErrors), and the file is written put-if-absent (the
// protocol: writers must not overwrite one), without an fsync of its own.
func (t *Table) writeChecksum(ctx context.Context, txnID string, ict int64) {
	c, ok := t.snap.checksum(txnID, ict)
	if !ok {
		return
	}
	v := t.snap.Version
	err := func() error {
		data, err := json.Marshal(c)
		if err != nil {
			return err
		}
		// Where the lake can write without an fsync (local disk), the
		// .crc is not made durable on its own: a crash may lose it (or
		// leave it empty), which readers must tolerate (PROTOCOL.md), and
		// the next commit's SyncFiles makes it durable with the data files.
		// Its fsyncs would double a commit's time on a local disk.
		if gw, ok := t.l.(lake.GroupWriter); ok {
			return gw.WriteIfAbsent(ctx, ChecksumName(t.name, v), data)
		}
		return t.l.PutIfAbsent(ctx, ChecksumName(t.name, v), data)
	}()
	if err == nil {
		return
	}
	t.checksumErrors.Add(1)
	t.log().Warn("delta: version checksum file not written (the commit stands)", slog.String("table", t.name),
		slog.Int64("version", v), slog.Bool("exists", errors.Is(err, lake.ErrExists)), slog.Any("err", err))
	if t.opts.ChecksumFailed != nil {
		t.opts.ChecksumFailed(err)
	}
}

// ChecksumErrors returns how many version checksum files this Table failed
// to write (each commit itself succeeded).
func (t *Table) ChecksumErrors() int64 { return t.checksumErrors.Load() }

func (t *Table) log() *slog.Logger {
	if t.opts.Logger != nil {
		return t.opts.Logger
	}
	return slog.Default()
}
