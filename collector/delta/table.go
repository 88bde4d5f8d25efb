package delta

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/pilake/pilake/collector/lake"
)

// Options configure a Table.
type Options struct {
	// PartitionColumns are the table's partition columns (string columns only).
	PartitionColumns []string
	// CheckpointInterval is the number of commits between checkpoints; 0 means 10.
	CheckpointInterval int
	// Compression is the data files' codec; nil means zstd at its fastest level.
	Compression parquet.WriterOption
	// Description is the metaData description of a new table.
	Description string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxRetries bounds how often Commit retries at the next version after
	// losing a race to another writer; 0 means 100.
	MaxRetries int
	// Properties are written into a new table's metaData.configuration, and
	// added to an existing table that lacks them (a metaData commit); values
	// a table already has are kept. Retention.Properties gives the
	// retention ones. A table's retention and checkpoint interval are read
	// from its properties (Snapshot.Retention), so these are defaults.
	Properties map[string]string
	// CheckpointMaxAge: a commit also writes a checkpoint when the last one
	// this Table wrote (or loaded) is older than this; 0: no time trigger.
	CheckpointMaxAge time.Duration
	// CheckpointBySize: a checkpoint due by delta.checkpointInterval waits
	// until the commits since the last checkpoint hold at least as many
	// bytes as that checkpoint (so checkpoints cost no more bytes than the
	// commits they cover, however many tombstones they carry), or until
	// CheckpointMaxAge.
	CheckpointBySize bool
	// CheckpointPolicy is the checkpoint kind of a table this Table
	// creates: CheckpointClassic ("" too: V1-spec checkpoints, reader
	// version 1, what every Delta reader reads) or CheckpointV2 (V2-spec
	// checkpoints whose sidecars later checkpoints reuse: the table gets
	// reader version 3 / writer version 7 with the v2Checkpoint feature and
	// delta.checkpointPolicy=v2, which Delta Lake 3.x, Databricks Runtime
	// 13.3 LTS+ and delta-kernel-rs read, and older readers refuse). An
	// existing table keeps its own: its protocol and
	// delta.checkpointPolicy decide (PropCheckpointPolicy).
	CheckpointPolicy string
	// Logger logs what does not fail a commit (a version checksum file not
	// written); nil means slog.Default().
	Logger *slog.Logger
	// ChecksumFailed, if set, is called when a version checksum file could
	// not be written (the commit stands; the failure is logged and counted
	// in ChecksumErrors too).
	ChecksumFailed func(error)
}

// Table writes one Delta table. A Table is not safe for concurrent use; two
// Tables (in one process or many) may write the same table concurrently.
type Table struct {
	l      lake.Lake
	name   string
	opts   Options
	schema StructType
	snap   *Snapshot
	lastCP int64
	// lastCPBytes and lastCPTime: size and write time of the last
	// checkpoint; tailBytes: bytes of the commits after it (this Table's).
	lastCPBytes, tailBytes int64
	lastCPTime             time.Time
	// lastWritten: the objects the last checkpoint this Table wrote put.
	lastWritten []string
	// ftCache: parsed statistics compaction uses (compact.go), of ftCol.
	ftCache map[string]fileTimes
	ftCol   string
	ftPass  uint64
	// readableCP identifies the cutoff checkpoint CleanupLog last read
	// whole; sidecarRefs the sidecars each kept checkpoint references (by
	// objectIDs), so hourly cleanup reads only new checkpoints.
	readableCP  string
	sidecarRefs map[string][]string
	// CheckpointErr is the error of the last failed checkpoint write (the
	// commit itself succeeded; the checkpoint is retried at the next commit).
	CheckpointErr error
	// unsynced is set when a data file was written without being made
	// durable (lake.GroupWriter); Commit syncs before it commits.
	unsynced atomic.Bool
	// optional are the columns T may hold nulls in (pointer fields).
	optional []string
	// conflicts counts commits that lost a race (another writer took the
	// version) and were retried at the next version.
	conflicts atomic.Int64
	// checksumErrors counts version checksum files not written.
	checksumErrors atomic.Int64
}

// Conflicts returns how many commit attempts of this Table lost the race
// for a version to another writer (each then retried at the next version).
func (t *Table) Conflicts() int64 { return t.conflicts.Load() }

// relaxNullability makes the table's columns that this Table's row type
// may leave null (pressure and humidity since issue 13) nullable, with a
// metaData commit (what Spark's ALTER TABLE … ALTER COLUMN … DROP NOT NULL
// writes), if the table declares any of them NOT NULL. Everything else of
// the schema string is kept as it is.
func (t *Table) relaxNullability(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		md := t.snap.Metadata
		var sch map[string]any
		if err := json.Unmarshal([]byte(md.SchemaString), &sch); err != nil {
			return fmt.Errorf("%w: schema: %v", ErrCorruptLog, err)
		}
		fields, _ := sch["fields"].([]any)
		changed := false
		for _, f := range fields {
			fm, ok := f.(map[string]any)
			if !ok || !slices.Contains(t.optional, fmt.Sprint(fm["name"])) {
				continue
			}
			if n, ok := fm["nullable"].(bool); ok && !n {
				fm["nullable"] = true
				changed = true
			}
		}
		if !changed {
			return nil
		}
		b, err := json.Marshal(sch)
		if err != nil {
			return err
		}
		md.SchemaString = string(b)
		_, err = t.Commit(ctx, []Action{{MetaData: &md}}, "CHANGE COLUMN")
		if err == nil || !errors.Is(err, ErrConflict) || attempt >= 3 {
			if err != nil {
				return fmt.Errorf("making columns %v nullable: %w", t.optional, err)
			}
			return nil
		}
		if err := t.Refresh(ctx); err != nil {
			return err
		}
	}
}

// Open opens table, creating it (version 0: protocol and metaData with T's
// schema) if it has no log yet. An existing table must have T's schema and
// the same partition columns.
func Open[T any](ctx context.Context, l lake.Lake, table string, opts Options) (*Table, error) {
	schema, err := SchemaOf[T]()
	if err != nil {
		return nil, fmt.Errorf("opening delta table %s: %w", table, err)
	}
	for _, c := range opts.PartitionColumns {
		f, ok := schema.Field(c)
		if !ok || f.Type != "string" {
			return nil, fmt.Errorf("opening delta table %s: partition column %q is not a string column", table, c)
		}
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = 10
	}
	if opts.Compression == nil {
		opts.Compression = DefaultCompression()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 100
	}
	switch opts.CheckpointPolicy {
	case "", CheckpointClassic, CheckpointV2:
	default:
		return nil, fmt.Errorf("opening delta table %s: checkpoint policy %q is neither %q nor %q", table, opts.CheckpointPolicy, CheckpointClassic, CheckpointV2)
	}
	t := &Table{l: l, name: table, opts: opts, schema: schema}
	for _, f := range parquet.SchemaOf(new(T)).Fields() {
		if f.Optional() {
			t.optional = append(t.optional, f.Name())
		}
	}
	for {
		snap, err := load(ctx, l, table, true)
		if err == nil {
			got, err := snap.Schema()
			if err != nil {
				return nil, fmt.Errorf("opening delta table %s: %w", table, err)
			}
			if schemaWritable(got, schema) != nil || !slices.Equal(snap.Metadata.PartitionColumns, opts.PartitionColumns) {
				return nil, fmt.Errorf("opening delta table %s: existing schema %s partitioned by %v differs from %s partitioned by %v",
					table, snap.Metadata.SchemaString, snap.Metadata.PartitionColumns, schema, opts.PartitionColumns)
			}
			t.snap = snap
			if err := t.writable(nil); err != nil {
				return nil, fmt.Errorf("opening delta table %s: %w", table, err)
			}
			t.lastCP = snap.checkpoint
			if t.lastCP < 0 {
				t.lastCP = snap.Version - snap.Version%int64(opts.CheckpointInterval)
			}
			t.lastCPBytes, t.lastCPTime = snap.checkpointBytes, opts.Now()
			if err := t.relaxNullability(ctx); err != nil {
				return nil, fmt.Errorf("opening delta table %s: %w", table, err)
			}
			if err := t.addProperties(ctx); err != nil {
				return nil, fmt.Errorf("opening delta table %s: %w", table, err)
			}
			return t, nil
		}
		if !errors.Is(err, ErrNoTable) {
			return nil, err
		}
		proto, conf := Protocol{MinReaderVersion: 1, MinWriterVersion: 2}, maps.Clone(nonNil(opts.Properties))
		if opts.CheckpointPolicy == CheckpointV2 {
			proto = v2Protocol()
			conf[PropCheckpointPolicy] = CheckpointV2
		}
		actions := []Action{
			{CommitInfo: t.commitInfo("CREATE TABLE")},
			{Protocol: &proto},
			{MetaData: &Metadata{
				ID: newUUID(), Name: path0(table), Description: opts.Description,
				Format: Format{Provider: "parquet", Options: map[string]string{}}, SchemaString: schema.String(),
				PartitionColumns: append([]string{}, opts.PartitionColumns...), CreatedTime: opts.Now().UnixMilli(),
				Configuration: conf,
			}},
		}
		data, err := encodeCommit(actions)
		if err != nil {
			return nil, err
		}
		err = l.PutIfAbsent(ctx, CommitName(table, 0), data)
		if err != nil && !errors.Is(err, lake.ErrExists) {
			return nil, fmt.Errorf("creating delta table %s: %w", table, err)
		}
		if err == nil {
			// Version 0 is what this Table wrote: its checksum is known.
			t.snap = newSnapshot()
			if t.snap.apply(actions) == nil {
				t.snap.Version = 0
				t.writeChecksum(ctx, "", 0)
			}
		}
		// Created, or another writer created it first: load it.
	}
}

func path0(table string) string {
	if i := strings.LastIndex(table, "/"); i >= 0 {
		return table[i+1:]
	}
	return table
}

func sameSchema(a, b StructType) bool {
	if len(a.Fields) != len(b.Fields) {
		return false
	}
	for i := range a.Fields {
		if a.Fields[i].Name != b.Fields[i].Name || a.Fields[i].Type != b.Fields[i].Type {
			return false
		}
	}
	return true
}

// Name returns the table's name (its prefix in the lake).
func (t *Table) Name() string { return t.name }

// Snapshot returns the table's state as of the last commit this Table saw.
// The caller must not modify it.
func (t *Table) Snapshot() *Snapshot { return t.snap }

// Schema returns the table's Delta schema.
func (t *Table) Schema() StructType { return t.schema }

// PartitionColumns returns the table's partition columns.
func (t *Table) PartitionColumns() []string { return t.opts.PartitionColumns }

// Refresh reads the commits other writers made since this Table last looked.
func (t *Table) Refresh(ctx context.Context) error {
	_, err := t.snap.update(ctx, t.l, t.name)
	return err
}

func (t *Table) commitInfo(op string) map[string]any {
	return map[string]any{
		"timestamp":           t.opts.Now().UnixMilli(),
		"operation":           op,
		"operationParameters": t.operationParameters(op),
		"engineInfo":          "pilake",
		"isBlindAppend":       op == "WRITE" || op == "STREAMING UPDATE",
	}
}

// operationParameters are commitInfo's operationParameters for op, shaped
// as Delta's own (every value a string, lists and maps JSON-encoded), which
// DESCRIBE HISTORY shows.
func (t *Table) operationParameters(op string) map[string]string {
	parts, _ := json.Marshal(nonNilSlice(t.opts.PartitionColumns))
	switch op {
	case "CREATE TABLE":
		return map[string]string{"isManaged": "false", "description": t.opts.Description, "partitionBy": string(parts), "properties": "{}"}
	case "WRITE":
		return map[string]string{"mode": "Append", "partitionBy": string(parts)}
	case "STREAMING UPDATE":
		return map[string]string{"outputMode": "Append"}
	case "OPTIMIZE":
		return map[string]string{"predicate": "[]", "zOrderBy": "[]", "auto": "true"}
	}
	return map[string]string{}
}

func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Commit writes actions as the table's next version, put-if-absent. If
// another writer took that version first, Commit reads the winning commits,
// fails with ErrConflict if one of them changes the metadata or protocol,
// commits a txn for one of this commit's appIds, or removes a file this
// commit removes, and otherwise retries at the next version. operation is
// recorded in commitInfo ("WRITE", "STREAMING UPDATE", "OPTIMIZE").
// Every CheckpointInterval versions it writes a checkpoint.
func (t *Table) Commit(ctx context.Context, actions []Action, operation string) (int64, error) {
	return t.CommitID(ctx, actions, operation, newUUID())
}

// CommitID is Commit with the commit's identity (commitInfo.txnId) given by
// the caller. A caller that retries a commit whose write may have landed
// although it reported an error (a timeout) passes the same id again: if
// the table already holds a commit with that id, CommitID returns its
// version instead of committing twice.
func (t *Table) CommitID(ctx context.Context, actions []Action, operation, id string) (int64, error) {
	info := t.commitInfo(operation)
	info["txnId"] = id
	all := make([]Action, 0, len(actions)+1)
	all = append(all, Action{CommitInfo: info})
	all = append(all, actions...)
	data, err := encodeCommit(all)
	if err != nil {
		return 0, fmt.Errorf("committing to %s: %w", t.name, err)
	}
	if err := t.SyncFiles(ctx); err != nil {
		return 0, fmt.Errorf("committing to %s: %w", t.name, err)
	}
	if err := t.writable(actions); err != nil {
		return 0, fmt.Errorf("committing to %s: %w", t.name, err)
	}
	for attempt := 0; ; attempt++ {
		v := t.snap.Version + 1
		// A file these actions touch that a sealed sidecar may hold comes
		// back into memory first (seal.go; only a hash collision for the
		// files a pilake writer adds and removes).
		if err := t.snap.unsealFor(ctx, t.l, actions); err != nil {
			return 0, fmt.Errorf("committing to %s: %w", t.name, err)
		}
		var ict int64
		if t.snap.inCommitTimestamps() {
			// In-Commit Timestamps: commitInfo (first) carries a timestamp
			// later than the previous commit's, for this attempt's version.
			if ict, err = t.nextInCommitTimestamp(ctx); err != nil {
				return 0, fmt.Errorf("committing to %s: %w", t.name, err)
			}
			info["inCommitTimestamp"] = ict
			if data, err = encodeCommit(all); err != nil {
				return 0, fmt.Errorf("committing to %s: %w", t.name, err)
			}
		}
		err := t.l.PutIfAbsent(ctx, CommitName(t.name, v), data)
		if err == nil {
			if err := t.snap.apply(actions); err != nil {
				return 0, fmt.Errorf("committing to %s: %w", t.name, err)
			}
			if ict != 0 {
				t.snap.lastICT = ict
			}
			t.snap.Version = v
			t.tailBytes += int64(len(data))
			t.writeChecksum(ctx, id, ict)
			t.maybeCheckpoint(ctx)
			return v, nil
		}
		if !errors.Is(err, lake.ErrExists) {
			return 0, fmt.Errorf("committing version %d to %s: %w", v, t.name, err)
		}
		t.conflicts.Add(1)
		if attempt >= t.opts.MaxRetries {
			return 0, fmt.Errorf("committing to %s: gave up after %d concurrent commits: %w", t.name, attempt, ErrConflict)
		}
		first := t.snap.Version + 1
		winners, err := t.snap.update(ctx, t.l, t.name)
		if err != nil {
			return 0, fmt.Errorf("committing to %s: %w", t.name, err)
		}
		for i, w := range winners {
			if len(w) > 0 && w[0].CommitInfo != nil && w[0].CommitInfo["txnId"] == id {
				return first + int64(i), nil // our own earlier attempt landed
			}
		}
		if err := conflicts(actions, winners); err != nil {
			return 0, fmt.Errorf("committing to %s: %w", t.name, err)
		}
		// Another writer may have changed the protocol or metadata (a
		// table feature, a constraint, a new column): commit only if this
		// commit still honours them.
		if err := t.writable(actions); err != nil {
			return 0, fmt.Errorf("committing to %s after version %d: %w", t.name, t.snap.Version, err)
		}
	}
}

// inCommitTimestamps reports whether the table has In-Commit Timestamps
// enabled (the writer feature and delta.enableInCommitTimestamps).
func (s *Snapshot) inCommitTimestamps() bool {
	return s.Protocol.MinWriterVersion == 7 && slices.Contains(s.Protocol.WriterFeatures, "inCommitTimestamp") &&
		s.Metadata.Configuration["delta.enableInCommitTimestamps"] == "true"
}

// nextInCommitTimestamp is the inCommitTimestamp of a commit after the
// table's current version: now, or a millisecond after the previous
// commit's, whichever is later. The previous one is read from that commit
// when the snapshot started from a checkpoint.
func (t *Table) nextInCommitTimestamp(ctx context.Context) (int64, error) {
	prev := t.snap.lastICT
	if prev == 0 && t.snap.Version >= 0 {
		data, err := t.l.Get(ctx, CommitName(t.name, t.snap.Version))
		if err != nil {
			return 0, fmt.Errorf("reading the previous commit's inCommitTimestamp: %w", err)
		}
		actions, err := decodeCommit(data)
		if err != nil {
			return 0, fmt.Errorf("reading the previous commit's inCommitTimestamp: %w", err)
		}
		for _, a := range actions {
			if ts, ok := a.CommitInfo["inCommitTimestamp"].(float64); ok {
				prev = int64(ts)
			}
		}
	}
	return max(t.opts.Now().UnixMilli(), prev+1), nil
}

// writable returns an error unless actions may be committed on the
// table's current state: the protocol and metadata ask nothing pilake does
// not honour (checkWritable), the table's schema still holds this Table's
// columns (added columns are nullable), an append-only table loses no data,
// and every added file provably satisfies the table's constraints.
func (t *Table) writable(actions []Action) error {
	s := t.snap
	if err := checkWritable(s.Protocol, s.Metadata); err != nil {
		return err
	}
	got, err := s.Schema()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCorruptLog, err)
	}
	if err := schemaWritable(got, t.schema); err != nil {
		return err
	}
	if !slices.Equal(s.Metadata.PartitionColumns, t.opts.PartitionColumns) {
		return fmt.Errorf("table partitioned by %v now, not %v: %w", s.Metadata.PartitionColumns, t.opts.PartitionColumns, ErrUnsupported)
	}
	if s.Metadata.Configuration["delta.appendOnly"] == "true" {
		for _, a := range actions {
			if a.Remove != nil && a.Remove.DataChange {
				return fmt.Errorf("table is append-only (delta.appendOnly): removing %s: %w", a.Remove.Path, ErrUnsupported)
			}
		}
	}
	if err := checkNotNull(got, actions); err != nil {
		return err
	}
	cs, err := tableConstraints(s.Metadata)
	if err != nil {
		return err
	}
	return checkConstraints(cs, got, actions)
}

// checkNotNull refuses added files with nulls (by their statistics) in a
// column the table declares NOT NULL (nullable false).
func checkNotNull(schema StructType, actions []Action) error {
	for _, a := range actions {
		if a.Add == nil || !a.Add.DataChange {
			continue
		}
		for _, f := range schema.Fields {
			if f.Nullable {
				continue
			}
			st, err := a.Add.ParsedStats()
			if err != nil {
				return fmt.Errorf("file %s: %w: %w", a.Add.Path, ErrConstraint, err)
			}
			if st.NumRecords > 0 && st.NullCount[f.Name] != 0 {
				return fmt.Errorf("file %s: %w: column %s is NOT NULL and the file has nulls in it", a.Add.Path, ErrConstraint, f.Name)
			}
		}
	}
	return nil
}

// schemaWritable returns an error unless files with schema ours can be
// appended to a table with schema table: every column of ours is in the
// table with the same type, and every other column of the table is
// nullable (the new files hold nulls for it).
func schemaWritable(table, ours StructType) error {
	for _, f := range ours.Fields {
		tf, ok := table.Field(f.Name)
		if !ok {
			return fmt.Errorf("column %s no longer in the table: %w", f.Name, ErrUnsupported)
		}
		if tf.Type != f.Type {
			return fmt.Errorf("column %s is %s in the table, %s here: %w", f.Name, tf.Type, f.Type, ErrUnsupported)
		}
	}
	for _, tf := range table.Fields {
		if _, ok := ours.Field(tf.Name); !ok && !tf.Nullable {
			return fmt.Errorf("table column %s is not nullable and pilake does not write it: %w", tf.Name, ErrUnsupported)
		}
	}
	return nil
}

func conflicts(ours []Action, winners [][]Action) error {
	apps := map[string]bool{}
	removes := map[string]bool{}
	changesMetadata := false
	for _, a := range ours {
		if a.MetaData != nil || a.Protocol != nil {
			changesMetadata = true
		}
		if a.Txn != nil {
			apps[a.Txn.AppID] = true
		}
		if a.Remove != nil {
			removes[canonicalOrRaw(a.Remove.Path)] = true
		}
	}
	for _, w := range winners {
		for _, a := range w {
			switch {
			case (a.MetaData != nil || a.Protocol != nil) && changesMetadata:
				return fmt.Errorf("%w: metadata or protocol changed", ErrConflict)
			case a.Txn != nil && apps[a.Txn.AppID]:
				return fmt.Errorf("%w: application %s committed concurrently", ErrConflict, a.Txn.AppID)
			case a.Remove != nil && removes[canonicalOrRaw(a.Remove.Path)]:
				return fmt.Errorf("%w: file %s removed concurrently", ErrConflict, a.Remove.Path)
			}
		}
	}
	return nil
}

func canonicalOrRaw(p string) string {
	if c, err := CanonicalPath(p); err == nil {
		return c
	}
	return p
}

// PutFile stores an encoded Parquet data file (see EncodeParquet) under a new
// unique name in the table and returns its add action (dataChange=true).
func (t *Table) PutFile(ctx context.Context, data []byte, st Stats, partitionValues map[string]string) (AddFile, error) {
	rel := ""
	for _, c := range t.opts.PartitionColumns {
		v, ok := partitionValues[c]
		if !ok {
			return AddFile{}, fmt.Errorf("storing data file in %s: no value for partition column %s", t.name, c)
		}
		rel += HivePartitionDir(c, v) + "/"
	}
	if len(partitionValues) != len(t.opts.PartitionColumns) {
		return AddFile{}, fmt.Errorf("storing data file in %s: partition values %v for columns %v", t.name, partitionValues, t.opts.PartitionColumns)
	}
	rel += "part-00000-" + newUUID() + ".c000.zstd.parquet"
	// Where the lake can make many writes durable at once, data files are
	// written without a sync each; SyncFiles (called by Commit) syncs them
	// before any commit can reference them.
	if gw, ok := t.l.(lake.GroupWriter); ok {
		t.unsynced.Store(true)
		if err := gw.WriteIfAbsent(ctx, t.name+"/"+rel, data); err != nil {
			return AddFile{}, fmt.Errorf("storing data file in %s: %w", t.name, err)
		}
	} else if err := t.l.PutIfAbsent(ctx, t.name+"/"+rel, data); err != nil {
		return AddFile{}, fmt.Errorf("storing data file in %s: %w", t.name, err)
	}
	stats, err := json.Marshal(st)
	if err != nil {
		return AddFile{}, fmt.Errorf("storing data file in %s: %w", t.name, err)
	}
	pv := map[string]string{}
	for k, v := range partitionValues {
		pv[k] = v
	}
	return AddFile{Path: EncodePath(rel), PartitionValues: pv, Size: int64(len(data)), ModificationTime: t.opts.Now().UnixMilli(),
		DataChange: true, Stats: string(stats)}, nil
}

// SyncFiles makes the data files PutFile wrote durable (a no-op unless the
// lake is a lake.GroupWriter and files were written since the last sync).
// Call it before recording the files anywhere durable other than a commit.
func (t *Table) SyncFiles(ctx context.Context) error {
	if !t.unsynced.Swap(false) {
		return nil
	}
	if err := t.l.(lake.GroupWriter).Sync(ctx); err != nil {
		t.unsynced.Store(true)
		return fmt.Errorf("syncing data files of %s: %w", t.name, err)
	}
	return nil
}

// WriteFile encodes rows (which must all have the same partition values,
// given in partitionValues) as a Parquet data file of t, stores it and returns
// its add action, to be committed with Commit.
func WriteFile[T any](ctx context.Context, t *Table, rows []T, partitionValues map[string]string) (AddFile, error) {
	data, st, err := EncodeParquet(rows, t.opts.PartitionColumns, t.opts.Compression)
	if err != nil {
		return AddFile{}, fmt.Errorf("writing data file of %s: %w", t.name, err)
	}
	return t.PutFile(ctx, data, st, partitionValues)
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// DefaultCompression is the data files' default codec: zstd at its fastest
// level (readable by Spark, DuckDB, pyarrow; smaller and, in parquet-go,
// faster than Snappy).
func DefaultCompression() parquet.WriterOption {
	return parquet.Compression(zstdFastest)
}

// zstdFastest is shared by every writer: the codec pools its encoders, and
// a zstd encoder's history buffers are costly to allocate per file.
var zstdFastest = newZstdCodec()

// WriterOptions are the Parquet writer options pilake's data files and
// checkpoints use: codec, DataPageV1 pages (PROTOCOL.md: writers SHOULD use
// them for tables other engines read; Spark 3.3+ and Databricks Runtime
// 13.3+ read both, older readers only v1), dictionary encoding for strings
// (PLAIN for the rest: parquet-go's default; see SparkSafeEncodings), and
// the created_by tag.
func WriterOptions(codec parquet.WriterOption) []parquet.WriterOption {
	if codec == nil {
		codec = DefaultCompression()
	}
	return []parquet.WriterOption{codec, parquet.DataPageVersion(1),
		parquet.DefaultEncodingFor(parquet.ByteArray, &parquet.RLEDictionary),
		parquet.CreatedBy("pilake", "1", "")}
}
