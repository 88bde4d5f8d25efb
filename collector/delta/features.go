package delta

import (
	"fmt"
	"slices"
)

// readerFeatures are the reader table features this package reads (reader
// version 3). Reading a table that lists any other is refused.
var readerFeatures = []string{
	"columnMapping",       // by name and by id
	"deletionVectors",     // inline and on-disk, RoaringBitmap
	"timestampNtz",        // read as microseconds, wall clock
	"v2Checkpoint",        // UUID-named checkpoints with sidecars
	"vacuumProtocolCheck", // Vacuum checks the protocol as a writer
	"typeWidening",        // widened types read exactly (int → long, float → double), else an error
}

// checkReadable returns an error wrapping ErrUnsupported unless this package
// can read a table with protocol p. Reader and writer versions are checked
// separately: a reader-v1 table is readable whatever its writer version.
func checkReadable(p Protocol) error {
	switch {
	case p.MinReaderVersion < 1:
		return fmt.Errorf("%w: protocol with reader version %d", ErrCorruptLog, p.MinReaderVersion)
	case p.MinReaderVersion <= 2: // 2: column mapping, which the metadata's mode then says
		return nil
	case p.MinReaderVersion == 3:
		for _, f := range p.ReaderFeatures {
			if !slices.Contains(readerFeatures, f) {
				return fmt.Errorf("table needs reader feature %q: %w", f, ErrUnsupported)
			}
		}
		return nil
	}
	return fmt.Errorf("table needs reader version %d: %w", p.MinReaderVersion, ErrUnsupported)
}

// hasReaderFeature reports whether the table's protocol enables feature f
// for readers (by version 2 for columnMapping, or listed in version 3).
func (p Protocol) hasReaderFeature(f string) bool {
	if p.MinReaderVersion == 2 && f == "columnMapping" {
		return true
	}
	return p.MinReaderVersion >= 3 && slices.Contains(p.ReaderFeatures, f)
}

// writerFeatures are the writer table features pilake's writes honour
// (writer version 7): its appends and compactions stay correct on a table
// that has them. Writing to a table that lists any other is refused.
//   - appendOnly: pilake only appends; compaction rearranges
//     (dataChange=false), which append-only tables allow.
//   - invariants, checkConstraints: enforced on every row pilake appends
//     (constraints.go); an expression pilake cannot evaluate is refused.
//   - changeDataFeed: appends need no cdc files (readers use the adds);
//     compaction changes no data.
//   - deletionVectors: pilake writes none; compaction leaves files with one
//     alone.
//   - domainMetadata: kept in the snapshot and in checkpoints.
//   - v2Checkpoint: with delta.checkpointPolicy=v2 pilake writes V2-spec
//     checkpoints (classic-named, with sidecars it reuses across
//     checkpoints, checkpoint_v2.go); otherwise classic V1-spec ones, which
//     the protocol allows; never multi-part ones. Log cleanup deletes only
//     sidecars no remaining checkpoint references.
//   - timestampNtz, typeWidening: pilake's columns are its own types.
//   - vacuumProtocolCheck: Vacuum checks the writer protocol first.
//   - columnMapping, with delta.columnMapping.mode none.
//   - inCommitTimestamp: commitInfo, first, carries inCommitTimestamp.
var writerFeatures = []string{"appendOnly", "invariants", "checkConstraints", "changeDataFeed", "deletionVectors",
	"domainMetadata", "v2Checkpoint", "timestampNtz", "typeWidening", "vacuumProtocolCheck", "columnMapping", "inCommitTimestamp"}

// checkWritable returns an error wrapping ErrUnsupported unless pilake's
// appends and compactions honour everything a table with protocol p and
// metadata m asks of writers.
func checkWritable(p Protocol, m Metadata) error {
	if err := checkReadable(p); err != nil {
		return err
	}
	switch {
	case p.MinWriterVersion < 1:
		return fmt.Errorf("%w: protocol with writer version %d", ErrCorruptLog, p.MinWriterVersion)
	case p.MinWriterVersion > 7:
		return fmt.Errorf("table needs writer version %d: %w", p.MinWriterVersion, ErrUnsupported)
	case p.MinWriterVersion == 7:
		for _, f := range p.WriterFeatures {
			if !slices.Contains(writerFeatures, f) {
				return fmt.Errorf("table needs writer feature %q: %w", f, ErrUnsupported)
			}
		}
	}
	// What versions 2-6 imply, and what a feature's presence in the
	// metadata asks, whatever the version says.
	if mode := m.Configuration["delta.columnMapping.mode"]; mode != "" && mode != "none" {
		return fmt.Errorf("table uses column mapping (mode %s), which pilake does not write: %w", mode, ErrUnsupported)
	}
	schema, err := ParseSchema(m.SchemaString)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCorruptLog, err)
	}
	for _, f := range schema.Fields {
		for k := range f.Metadata {
			switch {
			case k == "delta.generationExpression":
				return fmt.Errorf("column %s is generated, which pilake does not write: %w", f.Name, ErrUnsupported)
			case len(k) > len("delta.identity.") && k[:len("delta.identity.")] == "delta.identity.":
				return fmt.Errorf("column %s is an identity column, which pilake does not write: %w", f.Name, ErrUnsupported)
			}
		}
	}
	if _, err := tableConstraints(m); err != nil {
		return err
	}
	for k, v := range m.Configuration {
		switch {
		case k == "delta.enableRowTracking" && v == "true":
			return fmt.Errorf("table property %s=%s asks writers for what pilake does not write: %w", k, v, ErrUnsupported)
		}
	}
	return nil
}
