package delta

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Protocol is the protocol action: the reader and writer versions a client
// needs to read or write the table.
type Protocol struct {
	MinReaderVersion int      `json:"minReaderVersion"`
	MinWriterVersion int      `json:"minWriterVersion"`
	ReaderFeatures   []string `json:"readerFeatures,omitempty"` // reader version 3
	WriterFeatures   []string `json:"writerFeatures,omitempty"` // writer version 7
}

// DeletionVector is a deletion vector descriptor: the rows of a data file
// that are no longer in the table (PROTOCOL.md, Deletion Vectors).
type DeletionVector struct {
	StorageType    string `json:"storageType"` // "u" (relative, by UUID), "i" (inline), "p" (absolute path)
	PathOrInlineDv string `json:"pathOrInlineDv"`
	Offset         *int32 `json:"offset,omitempty"`
	SizeInBytes    int32  `json:"sizeInBytes"`
	Cardinality    int64  `json:"cardinality"`
}

// UniqueID is the descriptor's uniqueId (what tells two DVs of one file apart).
func (dv *DeletionVector) UniqueID() string {
	if dv == nil {
		return ""
	}
	if dv.Offset == nil {
		return dv.StorageType + dv.PathOrInlineDv
	}
	return fmt.Sprintf("%s%s@%d", dv.StorageType, dv.PathOrInlineDv, *dv.Offset)
}

// Format names the data files' format.
type Format struct {
	Provider string            `json:"provider"`
	Options  map[string]string `json:"options"`
}

// Metadata is the metaData action: the table's identity, schema and partitioning.
type Metadata struct {
	ID               string            `json:"id"`
	Name             string            `json:"name,omitempty"`
	Description      string            `json:"description,omitempty"`
	Format           Format            `json:"format"`
	SchemaString     string            `json:"schemaString"`
	PartitionColumns []string          `json:"partitionColumns"`
	CreatedTime      int64             `json:"createdTime,omitempty"`
	Configuration    map[string]string `json:"configuration"`
}

// AddFile is the add action: a data file that is part of the table.
type AddFile struct {
	Path             string            `json:"path"`
	PartitionValues  map[string]string `json:"partitionValues"`
	Size             int64             `json:"size"`
	ModificationTime int64             `json:"modificationTime"`
	DataChange       bool              `json:"dataChange"`
	Stats            string            `json:"stats,omitempty"` // JSON, see Stats
	Tags             map[string]string `json:"tags,omitempty"`
	DeletionVector   *DeletionVector   `json:"deletionVector,omitempty"`

	// read is how the table's files are read (column mapping), set by
	// Snapshot.Files; nil: by column name.
	read *readInfo
	// shed: a writer's snapshot dropped Stats (the add in the sidecar the
	// snapshot's origin names has them); see Snapshot.shed.
	shed bool
}

// Stats are the per-file statistics carried (as a JSON string) in AddFile.Stats.
// Timestamps in MinValues/MaxValues are strings like "2006-01-02T15:04:05.000Z"
// (truncated down to milliseconds, as the protocol says).
type Stats struct {
	NumRecords int64            `json:"numRecords"`
	MinValues  map[string]any   `json:"minValues,omitempty"`
	MaxValues  map[string]any   `json:"maxValues,omitempty"`
	NullCount  map[string]int64 `json:"nullCount,omitempty"`
}

// ParsedStats decodes a.Stats.
func (a AddFile) ParsedStats() (Stats, error) {
	var s Stats
	if a.Stats == "" {
		return s, fmt.Errorf("parsing stats of %s: %w", a.Path, ErrNoStats)
	}
	d := json.NewDecoder(bytes.NewReader([]byte(a.Stats)))
	d.UseNumber()
	if err := d.Decode(&s); err != nil {
		return s, fmt.Errorf("parsing stats of %s: %w", a.Path, err)
	}
	return s, nil
}

// ParseStatsTime parses a timestamp statistic ("2006-01-02T15:04:05.000Z") into
// microseconds since the epoch.
func ParseStatsTime(v any) (int64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("timestamp statistic %v is not a string", v)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("parsing timestamp statistic: %w", err)
	}
	return t.UnixMicro(), nil
}

// RemoveFile is the remove action: a tombstone for a data file that is no
// longer part of the table.
type RemoveFile struct {
	Path                 string            `json:"path"`
	DeletionTimestamp    int64             `json:"deletionTimestamp"`
	DataChange           bool              `json:"dataChange"`
	ExtendedFileMetadata bool              `json:"extendedFileMetadata,omitempty"`
	PartitionValues      map[string]string `json:"partitionValues,omitempty"`
	Size                 int64             `json:"size,omitempty"`
	DeletionVector       *DeletionVector   `json:"deletionVector,omitempty"`
}

// MarshalJSON writes r; with ExtendedFileMetadata set, partitionValues
// and size are always present (an unpartitioned table's as {}), as the
// flag promises.
func (r RemoveFile) MarshalJSON() ([]byte, error) {
	type plain RemoveFile
	if !r.ExtendedFileMetadata {
		return json.Marshal(plain(r))
	}
	pv := r.PartitionValues
	if pv == nil {
		pv = map[string]string{}
	}
	return json.Marshal(struct {
		Path                 string            `json:"path"`
		DeletionTimestamp    int64             `json:"deletionTimestamp"`
		DataChange           bool              `json:"dataChange"`
		ExtendedFileMetadata bool              `json:"extendedFileMetadata"`
		PartitionValues      map[string]string `json:"partitionValues"`
		Size                 int64             `json:"size"`
		DeletionVector       *DeletionVector   `json:"deletionVector,omitempty"`
	}{r.Path, r.DeletionTimestamp, r.DataChange, true, pv, r.Size, r.DeletionVector})
}

// Txn is an application transaction identifier: the latest version of an
// application's progress committed to the table, for exactly-once writes.
type Txn struct {
	AppID       string `json:"appId"`
	Version     int64  `json:"version"`
	LastUpdated int64  `json:"lastUpdated,omitempty"`
}

// DomainMetadata is a domainMetadata action: a named configuration other
// writers keep (PROTOCOL.md, Domain Metadata). pilake writes none; it keeps
// those of others in its snapshots and checkpoints.
type DomainMetadata struct {
	Domain        string `json:"domain"`
	Configuration string `json:"configuration"`
	Removed       bool   `json:"removed"`
}

// Sidecar is a sidecar action of a V2-spec checkpoint: a file in
// _delta_log/_sidecars holding some of the checkpoint's add and remove
// actions.
type Sidecar struct {
	Path             string            `json:"path"`
	SizeInBytes      int64             `json:"sizeInBytes"`
	ModificationTime int64             `json:"modificationTime"`
	Tags             map[string]string `json:"tags,omitempty"`
}

// CheckpointMetadata is the checkpointMetadata action that every V2-spec
// checkpoint holds exactly once.
type CheckpointMetadata struct {
	Version int64             `json:"version"`
	Tags    map[string]string `json:"tags,omitempty"`
}

// Action is one line of a commit: exactly one field is set.
type Action struct {
	Add        *AddFile        `json:"add,omitempty"`
	Remove     *RemoveFile     `json:"remove,omitempty"`
	MetaData   *Metadata       `json:"metaData,omitempty"`
	Protocol   *Protocol       `json:"protocol,omitempty"`
	Txn        *Txn            `json:"txn,omitempty"`
	CommitInfo map[string]any  `json:"commitInfo,omitempty"`
	Domain     *DomainMetadata `json:"domainMetadata,omitempty"`
	Sidecar    *Sidecar        `json:"sidecar,omitempty"` // V2 checkpoints only
	// CheckpointMetadata: V2 checkpoints only.
	CheckpointMetadata *CheckpointMetadata `json:"checkpointMetadata,omitempty"`
}

// Errors.
var (
	// ErrNoTable means the table has no _delta_log commits.
	ErrNoTable = errors.New("no delta table")
	// ErrCorruptLog means a commit or checkpoint could not be parsed or the log has a gap.
	ErrCorruptLog = errors.New("corrupt delta log")
	// ErrConflict means a concurrent commit conflicts with this one; the caller must reload and redo its work.
	ErrConflict = errors.New("conflicting concurrent commit")
	// ErrCorruptFile means a Parquet data file could not be read.
	ErrCorruptFile = errors.New("corrupt data file")
	// ErrNoStats means an add action carries no statistics.
	ErrNoStats = errors.New("no statistics")
	// ErrCannotCompact means compaction left a file alone because it could
	// not rewrite it exactly (a deletion vector, a column needing
	// conversion): never a rewrite that changes values.
	ErrCannotCompact = errors.New("file cannot be compacted exactly")
	// ErrUnsupported means the table needs a protocol feature this package does not implement.
	ErrUnsupported = errors.New("unsupported delta protocol")
)

func (a *Action) count() int {
	n := 0
	if a.Add != nil {
		n++
	}
	if a.Remove != nil {
		n++
	}
	if a.MetaData != nil {
		n++
	}
	if a.Protocol != nil {
		n++
	}
	if a.Txn != nil {
		n++
	}
	if a.CommitInfo != nil {
		n++
	}
	if a.Domain != nil {
		n++
	}
	if a.Sidecar != nil {
		n++
	}
	if a.CheckpointMetadata != nil {
		n++
	}
	return n
}

// encodeCommit renders actions as newline-delimited JSON.
func encodeCommit(actions []Action) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for i := range actions {
		if actions[i].count() != 1 {
			return nil, fmt.Errorf("encoding commit: action %d has %d kinds, want 1", i, actions[i].count())
		}
		if err := enc.Encode(&actions[i]); err != nil {
			return nil, fmt.Errorf("encoding commit: %w", err)
		}
	}
	return buf.Bytes(), nil
}

// decodeCommit parses a commit file. Unknown action kinds (cdc, domainMetadata,
// ...) are ignored as the protocol allows only when they do not affect reads;
// tables that need them declare higher protocol versions, which Load rejects.
func decodeCommit(data []byte) ([]Action, error) {
	var out []Action
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		var line []byte
		if i < 0 {
			line, data = data, nil
		} else {
			line, data = data[:i], data[i+1:]
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var a Action
		if err := json.Unmarshal(line, &a); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorruptLog, err)
		}
		out = append(out, a)
	}
	return out, nil
}
