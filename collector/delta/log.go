package delta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/pilake/pilake/collector/lake"
)

// Snapshot is the state of a table at one version: protocol, metadata, live
// files, tombstones and application transaction versions.
type Snapshot struct {
	Version  int64 // -1 for a table with no commits
	Protocol Protocol
	Metadata Metadata

	files      map[string]AddFile    // by fileKey: canonical path and DV
	tombstones map[string]RemoveFile // by fileKey
	txns       map[string]Txn
	domains    map[string]DomainMetadata

	// A lean snapshot (a writer's: Table) does not hold the tombstones of
	// the checkpoint it started from, only their number (carried); its
	// tombstones map holds those of the commits after that checkpoint.
	// The next checkpoint streams the carried ones from the file.
	lean    bool
	carried int64
	// checkpoint is the version of the checkpoint the snapshot was read
	// from or last written (-1: none), checkpointBytes its size.
	checkpoint      int64
	checkpointBytes int64
	checkpointFiles []string // the objects it was read from, sidecars included
	// tombFiles are the checkpoint's objects that hold remove actions (the
	// lean snapshot's carried tombstones are streamed from them).
	tombFiles []string
	// sidecars are the checkpoint's sidecar files (V2), by object name.
	sidecars map[string]sidecarRef
	// origin maps a live file (fileKey) to the sidecar object that holds
	// its add action unchanged; any later add or remove of the file drops
	// it. Kept by lean snapshots only: it is what lets the next V2
	// checkpoint reuse a sidecar (checkpoint_v2.go).
	origin map[string]string
	// lastICT is the inCommitTimestamp of the last commit applied (0:
	// unknown, e.g. right after a checkpoint).
	lastICT int64
	// liveBytes is the sum of the live files' sizes (a version checksum's
	// tableSizeBytes), kept as files are added and removed.
	liveBytes int64
	// partial is set once actions failed to apply partway: the state may
	// be neither the version before nor the one after, so no version
	// checksum is written from it.
	partial bool
	// shed counts the live files whose statistics a lean snapshot dropped
	// (see shed); shared holds the partitionValues and tags maps those
	// files share.
	shed   int
	shared map[string]map[string]string
	// filesOnly: the snapshot follows only the live files, without their
	// statistics as of ForgetStats and without tombstones.
	filesOnly bool
	// checkOnly: add and remove actions are checked, not kept (checkpointReadable).
	checkOnly bool
	// sealed are a lean snapshot's sealed sidecars, whose sealedN live
	// files are not in files (seal.go).
	sealed  map[string]sealedRef
	sealedN int
}

func newSnapshot() *Snapshot {
	return &Snapshot{Version: -1, files: map[string]AddFile{}, tombstones: map[string]RemoveFile{}, txns: map[string]Txn{}, domains: map[string]DomainMetadata{}, checkpoint: -1}
}

// setLean makes s a writer's snapshot (see lean).
func (s *Snapshot) setLean(lean bool) {
	s.lean = lean
	if lean {
		s.origin = map[string]string{}
	}
}

// All yields the live data files in no particular order: Files without
// its copy and sort, for a reader that looks at every file often (the
// same files as Files).
func (s *Snapshot) All() iter.Seq[AddFile] {
	ri := s.readInfo()
	return func(yield func(AddFile) bool) {
		for _, f := range s.files {
			f.read = ri
			if !yield(f) {
				return
			}
		}
	}
}

// Update applies to s the commits after s.Version that exist now and
// returns their actions, oldest first: LoadAfter without its copy of the
// snapshot, for a reader that owns s. On an error s may be partly updated;
// load it again.
func (s *Snapshot) Update(ctx context.Context, l lake.Lake, table string) ([][]Action, error) {
	return s.update(ctx, l, table)
}

// Files returns the live data files, sorted by path. Those of a Table's
// own snapshot (Table.Snapshot) are the files it holds in memory: files
// written before yesterday come without Stats, and once sealed (seal.go)
// not at all; NumFiles counts every live file. Load gives them all.
func (s *Snapshot) Files() []AddFile {
	out := slices.Collect(maps.Values(s.files))
	ri := s.readInfo()
	for i := range out {
		out[i].read = ri
	}
	slices.SortFunc(out, func(a, b AddFile) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// CheckpointBytes returns the bytes of the checkpoint the snapshot was
// read from or last written: its file(s) and the sidecars it references
// (0: none).
func (s *Snapshot) CheckpointBytes() int64 { return s.checkpointBytes }

// NumFiles returns the number of live data files.
func (s *Snapshot) NumFiles() int { return len(s.files) + s.sealedN }

// NumTombstones returns the number of remove actions the table keeps (for a
// Table's snapshot, including those it does not hold in memory).
func (s *Snapshot) NumTombstones() int64 { return s.carried + int64(len(s.tombstones)) }

// Tombstones returns the remove actions still kept, sorted by path. For the
// snapshot of a Table (a writer) these are only the ones since its last
// checkpoint; Load's snapshots hold all.
func (s *Snapshot) Tombstones() []RemoveFile {
	out := slices.Collect(maps.Values(s.tombstones))
	slices.SortFunc(out, func(a, b RemoveFile) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// TxnVersion returns the latest committed version of application appID.
func (s *Snapshot) TxnVersion(appID string) (int64, bool) {
	t, ok := s.txns[appID]
	return t.Version, ok
}

// Domain returns the live domainMetadata of domain d (another writer's;
// pilake keeps them).
func (s *Snapshot) Domain(d string) (DomainMetadata, bool) {
	dm, ok := s.domains[d]
	return dm, ok
}

// Schema parses the table's schema.
func (s *Snapshot) Schema() (StructType, error) { return ParseSchema(s.Metadata.SchemaString) }

func (s *Snapshot) apply(actions []Action) error {
	if err := s.applyActions(actions); err != nil {
		s.partial = true
		return err
	}
	return nil
}

func (s *Snapshot) applyActions(actions []Action) error {
	for _, a := range actions {
		switch {
		case a.Protocol != nil:
			if err := checkReadable(*a.Protocol); err != nil {
				return err
			}
			s.Protocol = *a.Protocol
		case a.MetaData != nil:
			s.Metadata = *a.MetaData
		case a.Add != nil:
			if a.Add.Path == "" {
				return fmt.Errorf("%w: add action without path", ErrCorruptLog)
			}
			p, err := fileKey(a.Add.Path, a.Add.DeletionVector)
			if err != nil {
				return err
			}
			if s.checkOnly {
				continue
			}
			s.unshed(p)
			if old, ok := s.files[p]; ok {
				s.liveBytes -= old.Size
			}
			f := *a.Add
			if s.filesOnly {
				f.Stats = ""
				if len(f.PartitionValues) == 0 {
					f.PartitionValues = nil
				}
			}
			s.files[p] = f
			s.liveBytes += a.Add.Size
			delete(s.tombstones, p)
			delete(s.origin, p)
		case a.Remove != nil:
			p, err := fileKey(a.Remove.Path, a.Remove.DeletionVector)
			if err != nil {
				return err
			}
			if s.checkOnly {
				continue
			}
			s.unshed(p)
			if old, ok := s.files[p]; ok {
				s.liveBytes -= old.Size
				delete(s.files, p)
			}
			if !s.filesOnly {
				s.tombstones[p] = *a.Remove
			}
			delete(s.origin, p)
		case a.Txn != nil:
			s.txns[a.Txn.AppID] = *a.Txn
		case a.CommitInfo != nil:
			if ts, ok := a.CommitInfo["inCommitTimestamp"].(float64); ok {
				s.lastICT = int64(ts)
			} else {
				s.lastICT = 0
			}
		case a.Domain != nil:
			if a.Domain.Removed {
				delete(s.domains, a.Domain.Domain)
			} else {
				s.domains[a.Domain.Domain] = *a.Domain
			}
		}
	}
	return nil
}

// complete returns an error unless the snapshot has a protocol and a
// metadata action (a log without them is not a table, whatever it adds).
func (s *Snapshot) complete() error {
	if s.Protocol.MinReaderVersion == 0 {
		return fmt.Errorf("%w: no protocol action", ErrCorruptLog)
	}
	if s.Metadata.SchemaString == "" {
		return fmt.Errorf("%w: no metaData action", ErrCorruptLog)
	}
	return nil
}

// fileKey is the key of a logical file: its canonical path and, with a
// deletion vector, the DV's uniqueId (PROTOCOL.md: the primary key of a
// logical file is (path, dvId)).
func fileKey(path string, dv *DeletionVector) (string, error) {
	p, err := CanonicalPath(path)
	if err != nil {
		return "", err
	}
	if dv != nil {
		p += "\x00" + dv.UniqueID()
	}
	return p, nil
}

func (s *Snapshot) clone() *Snapshot {
	c := *s
	c.files = maps.Clone(s.files)
	c.tombstones = maps.Clone(s.tombstones)
	c.txns = maps.Clone(s.txns)
	c.domains = maps.Clone(s.domains)
	c.origin = maps.Clone(s.origin)
	c.sidecars = maps.Clone(s.sidecars)
	c.sealed = maps.Clone(s.sealed)
	c.checkpointFiles = slices.Clone(s.checkpointFiles)
	c.tombFiles = slices.Clone(s.tombFiles)
	return &c
}

// LogDir returns the name prefix of table's log ("table/_delta_log/").
func LogDir(table string) string { return table + "/_delta_log/" }

// CommitName returns the object name of table's commit v.
func CommitName(table string, v int64) string { return fmt.Sprintf("%s%020d.json", LogDir(table), v) }

// CheckpointName returns the object name of table's checkpoint at v.
func CheckpointName(table string, v int64) string {
	return fmt.Sprintf("%s%020d.checkpoint.parquet", LogDir(table), v)
}

// LastCheckpointName returns the object name of table's _last_checkpoint.
func LastCheckpointName(table string) string { return LogDir(table) + "_last_checkpoint" }

// LastCheckpoint is the content of _last_checkpoint.
type LastCheckpoint struct {
	Version int64 `json:"version"`
	Size    int64 `json:"size"`            // actions in the checkpoint (sidecars' included)
	Parts   int   `json:"parts,omitempty"` // of a multi-part checkpoint
	// SizeInBytes: bytes of the checkpoint (and its sidecars); optional.
	SizeInBytes int64 `json:"sizeInBytes,omitempty"`
	// NumOfAddFiles: add actions in the checkpoint; optional.
	NumOfAddFiles int64 `json:"numOfAddFiles,omitempty"`
}

// Load replays table's log (latest checkpoint, then the JSON commits after
// it) and returns its latest snapshot, or an error wrapping ErrNoTable.
// It starts from the checkpoint _last_checkpoint names and reads the commits
// after it one by one, without listing the log; without a usable
// _last_checkpoint it lists the log.
func Load(ctx context.Context, l lake.Lake, table string) (*Snapshot, error) {
	return load(ctx, l, table, false)
}

// load is Load; lean leaves the checkpoint's tombstones out of memory.
func load(ctx context.Context, l lake.Lake, table string, lean bool) (*Snapshot, error) {
	if s, ok := loadFromLastCheckpoint(ctx, l, table, lean); ok {
		return s, nil
	}
	return loadByListing(ctx, l, table, lean)
}

// LoadAfter returns table's latest snapshot, reading only the commits made
// after prev (which it does not modify). prev nil means Load.
func LoadAfter(ctx context.Context, l lake.Lake, table string, prev *Snapshot) (*Snapshot, error) {
	if prev == nil {
		return Load(ctx, l, table)
	}
	s := prev.clone()
	if _, err := s.update(ctx, l, table); err != nil {
		return nil, err
	}
	return s, nil
}

func loadFromLastCheckpoint(ctx context.Context, l lake.Lake, table string, lean bool) (*Snapshot, bool) {
	data, err := l.Get(ctx, LastCheckpointName(table))
	if err != nil {
		return nil, false
	}
	var lc LastCheckpoint
	if err := json.Unmarshal(data, &lc); err != nil || lc.Version < 0 {
		return nil, false
	}
	s := newSnapshot()
	s.setLean(lean)
	var files []string
	if lc.Parts > 1 {
		files = multiPartNames(table, lc.Version, lc.Parts)
	} else if _, err := l.Get(ctx, CheckpointName(table, lc.Version)); errors.Is(err, lake.ErrNotFound) {
		// Not a classic checkpoint: a UUID-named (V2) one, found by listing
		// that version's checkpoint files.
		objs, err := l.List(ctx, fmt.Sprintf("%s%020d.checkpoint.", LogDir(table), lc.Version))
		if err != nil {
			return nil, false
		}
		var cp checkpointParts
		for _, o := range objs {
			if base := strings.TrimPrefix(o.Name, LogDir(table)); !strings.Contains(base, "/") {
				cp.add(base)
			}
		}
		if files = cp.files(table, lc.Version); files == nil {
			return nil, false
		}
	}
	if err := s.readCheckpoint(ctx, l, table, lc.Version, files); err != nil {
		return nil, false
	}
	if _, err := s.update(ctx, l, table); err != nil || s.complete() != nil {
		return nil, false
	}
	return s, true
}

func loadByListing(ctx context.Context, l lake.Lake, table string, lean bool) (*Snapshot, error) {
	return loadVersion(ctx, l, table, math.MaxInt64, lean)
}

// LoadVersion returns table's snapshot at version v (time travel): the
// newest checkpoint not newer than v, then the commits up to v. It fails
// (ErrCorruptLog) when the log no longer holds what v needs.
func LoadVersion(ctx context.Context, l lake.Lake, table string, v int64) (*Snapshot, error) {
	if v < 0 {
		return nil, fmt.Errorf("loading %s at version %d: %w", table, v, ErrNoTable)
	}
	s, err := loadVersion(ctx, l, table, v, false)
	if err != nil {
		return nil, err
	}
	if s.Version != v {
		return nil, fmt.Errorf("loading %s at version %d: the log ends at %d: %w", table, v, s.Version, ErrNoTable)
	}
	return s, nil
}

// loadVersion lists the log's direct children (a stray file in a
// subdirectory such as _delta_log/.tmp/ is not part of the log) and replays
// the newest checkpoint not newer than maxV and the commits after it, in
// version order, up to maxV.
func loadVersion(ctx context.Context, l lake.Lake, table string, maxV int64, lean bool) (*Snapshot, error) {
	objs, err := l.List(ctx, LogDir(table))
	if err != nil {
		return nil, fmt.Errorf("loading delta table %s: %w", table, err)
	}
	var commits []int64
	cps := map[int64]*checkpointParts{}
	for _, o := range objs {
		base := strings.TrimPrefix(o.Name, LogDir(table))
		if strings.Contains(base, "/") {
			continue
		}
		if v, ok := strings.CutSuffix(base, ".json"); ok && len(v) == 20 {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 && n <= maxV {
				commits = append(commits, n)
			}
		} else if v, ok := isCheckpointName(base); ok && v <= maxV {
			if cps[v] == nil {
				cps[v] = &checkpointParts{}
			}
			cps[v].add(base)
		}
	}
	slices.Sort(commits)
	// The newest complete checkpoint (a multi-part one with a part missing
	// is ignored, as the protocol says).
	cp, cpFiles := int64(-1), []string(nil)
	for _, v := range slices.Backward(slices.Sorted(maps.Keys(cps))) {
		if f := cps[v].files(table, v); f != nil {
			cp, cpFiles = v, f
			break
		}
	}
	if len(commits) == 0 && cp < 0 {
		return nil, fmt.Errorf("loading delta table %s: %w", table, ErrNoTable)
	}
	s := newSnapshot()
	s.setLean(lean)
	if cp >= 0 {
		if err := s.readCheckpoint(ctx, l, table, cp, cpFiles); err != nil {
			return nil, err
		}
	}
	want := s.Version + 1
	for _, v := range commits {
		if v < want {
			continue
		}
		if v != want {
			return nil, fmt.Errorf("loading delta table %s: %w: version %d missing", table, ErrCorruptLog, want)
		}
		if err := s.applyCommit(ctx, l, table, v); err != nil {
			return nil, err
		}
		want++
	}
	if err := s.complete(); err != nil {
		return nil, fmt.Errorf("loading delta table %s: %w", table, err)
	}
	return s, nil
}

func (s *Snapshot) applyCommit(ctx context.Context, l lake.Lake, table string, v int64) error {
	data, err := l.Get(ctx, CommitName(table, v))
	if err != nil {
		return fmt.Errorf("reading commit %d of %s: %w", v, table, err)
	}
	actions, err := decodeCommit(data)
	if err != nil {
		return fmt.Errorf("reading commit %d of %s: %w", v, table, err)
	}
	if err := s.unsealFor(ctx, l, actions); err != nil {
		return fmt.Errorf("applying commit %d of %s: %w", v, table, err)
	}
	if err := s.apply(actions); err != nil {
		return fmt.Errorf("applying commit %d of %s: %w", v, table, err)
	}
	s.Version = v
	return nil
}

// update applies the commits after s.Version that exist now, and returns
// the actions of each (for conflict checks).
func (s *Snapshot) update(ctx context.Context, l lake.Lake, table string) ([][]Action, error) {
	var out [][]Action
	for {
		data, err := l.Get(ctx, CommitName(table, s.Version+1))
		if errors.Is(err, lake.ErrNotFound) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("reading commit %d of %s: %w", s.Version+1, table, err)
		}
		actions, err := decodeCommit(data)
		if err != nil {
			return out, fmt.Errorf("reading commit %d of %s: %w", s.Version+1, table, err)
		}
		if err := s.unsealFor(ctx, l, actions); err != nil {
			return out, fmt.Errorf("applying commit %d of %s: %w", s.Version+1, table, err)
		}
		if err := s.apply(actions); err != nil {
			return out, fmt.Errorf("applying commit %d of %s: %w", s.Version+1, table, err)
		}
		s.Version++
		out = append(out, actions)
	}
}

// Checkpoint rows: the checkpoint schema of the protocol (one action per row).
type cpRow struct {
	Txn      *cpTxn      `parquet:"txn,optional"`
	Add      *cpAdd      `parquet:"add,optional"`
	Remove   *cpRemove   `parquet:"remove,optional"`
	MetaData *cpMetadata `parquet:"metaData,optional"`
	Protocol *cpProtocol `parquet:"protocol,optional"`
	Domain   *cpDomain   `parquet:"domainMetadata,optional"`
}

type cpTxn struct {
	AppID       string `parquet:"appId"`
	Version     int64  `parquet:"version"`
	LastUpdated *int64 `parquet:"lastUpdated,optional"`
}

type cpAdd struct {
	Path             string            `parquet:"path"`
	PartitionValues  map[string]string `parquet:"partitionValues"`
	Size             int64             `parquet:"size"`
	ModificationTime int64             `parquet:"modificationTime"`
	DataChange       bool              `parquet:"dataChange"`
	Stats            *string           `parquet:"stats,optional"`
	Tags             map[string]string `parquet:"tags,optional"`
	DeletionVector   *cpDV             `parquet:"deletionVector,optional"`
}

type cpRemove struct {
	Path                 string            `parquet:"path"`
	DeletionTimestamp    *int64            `parquet:"deletionTimestamp,optional"`
	DataChange           bool              `parquet:"dataChange"`
	ExtendedFileMetadata *bool             `parquet:"extendedFileMetadata,optional"`
	PartitionValues      map[string]string `parquet:"partitionValues,optional"`
	Size                 *int64            `parquet:"size,optional"`
	DeletionVector       *cpDV             `parquet:"deletionVector,optional"`
}

type cpFormat struct {
	Provider string            `parquet:"provider"`
	Options  map[string]string `parquet:"options,optional"`
}

type cpMetadata struct {
	ID               string            `parquet:"id"`
	Name             *string           `parquet:"name,optional"`
	Description      *string           `parquet:"description,optional"`
	Format           cpFormat          `parquet:"format"`
	SchemaString     string            `parquet:"schemaString"`
	PartitionColumns []string          `parquet:"partitionColumns,list"`
	CreatedTime      *int64            `parquet:"createdTime,optional"`
	Configuration    map[string]string `parquet:"configuration"`
}

type cpProtocol struct {
	MinReaderVersion int32    `parquet:"minReaderVersion"`
	MinWriterVersion int32    `parquet:"minWriterVersion"`
	ReaderFeatures   []string `parquet:"readerFeatures,optional,list"`
	WriterFeatures   []string `parquet:"writerFeatures,optional,list"`
}

// cpDV is a deletion vector descriptor in a checkpoint.
type cpDV struct {
	StorageType    string `parquet:"storageType"`
	PathOrInlineDv string `parquet:"pathOrInlineDv"`
	Offset         *int32 `parquet:"offset,optional"`
	SizeInBytes    int32  `parquet:"sizeInBytes"`
	Cardinality    int64  `parquet:"cardinality"`
}

func (d *cpDV) dv() *DeletionVector {
	if d == nil {
		return nil
	}
	return &DeletionVector{StorageType: d.StorageType, PathOrInlineDv: d.PathOrInlineDv, Offset: d.Offset, SizeInBytes: d.SizeInBytes, Cardinality: d.Cardinality}
}

func cpDVOf(d *DeletionVector) *cpDV {
	if d == nil {
		return nil
	}
	return &cpDV{StorageType: d.StorageType, PathOrInlineDv: d.PathOrInlineDv, Offset: d.Offset, SizeInBytes: d.SizeInBytes, Cardinality: d.Cardinality}
}

// cpDomain is a domainMetadata action in a checkpoint.
type cpDomain struct {
	Domain        string `parquet:"domain"`
	Configuration string `parquet:"configuration"`
	Removed       bool   `parquet:"removed"`
}

func optStr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func optInt(n int64) *int64 {
	if n == 0 {
		return nil
	}
	return &n
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func encodeLastCheckpoint(lc LastCheckpoint) []byte {
	b, _ := json.Marshal(lc)
	return b
}
