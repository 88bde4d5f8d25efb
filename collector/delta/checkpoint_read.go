package delta

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"

	"github.com/pilake/pilake/collector/lake"
)

// cpSidecar is a sidecar action in a V2-spec checkpoint.
type cpSidecar struct {
	Path             string            `parquet:"path"`
	SizeInBytes      int64             `parquet:"sizeInBytes"`
	ModificationTime int64             `parquet:"modificationTime"`
	Tags             map[string]string `parquet:"tags,optional"`
}

// cpCheckpointMetadata is the checkpointMetadata action of a V2-spec
// checkpoint.
type cpCheckpointMetadata struct {
	Version int64             `parquet:"version"`
	Tags    map[string]string `parquet:"tags,optional"`
}

// cpReadRow is what a checkpoint row is read as: cpRow and the actions
// only V2-spec checkpoints hold. A V2 checkpoint's top-level file is written
// with it too: add and remove are never set there (they are all in
// sidecars) but are columns of its schema, so that readers projecting them
// find null columns.
type cpReadRow struct {
	Txn      *cpTxn                `parquet:"txn,optional"`
	Add      *cpAdd                `parquet:"add,optional"`
	Remove   *cpRemove             `parquet:"remove,optional"`
	MetaData *cpMetadata           `parquet:"metaData,optional"`
	Protocol *cpProtocol           `parquet:"protocol,optional"`
	Domain   *cpDomain             `parquet:"domainMetadata,optional"`
	Sidecar  *cpSidecar            `parquet:"sidecar,optional"`
	CPMeta   *cpCheckpointMetadata `parquet:"checkpointMetadata,optional"`
}

// action converts a checkpoint row to the action it holds (ok=false: none
// this package knows).
func (row *cpReadRow) action() (a Action, ok bool) {
	switch {
	case row.Protocol != nil:
		p := row.Protocol
		a.Protocol = &Protocol{MinReaderVersion: int(p.MinReaderVersion), MinWriterVersion: int(p.MinWriterVersion),
			ReaderFeatures: p.ReaderFeatures, WriterFeatures: p.WriterFeatures}
	case row.MetaData != nil:
		m := row.MetaData
		a.MetaData = &Metadata{ID: m.ID, Format: Format{Provider: m.Format.Provider, Options: m.Format.Options},
			SchemaString: m.SchemaString, PartitionColumns: m.PartitionColumns, Configuration: m.Configuration}
		if m.Name != nil {
			a.MetaData.Name = *m.Name
		}
		if m.Description != nil {
			a.MetaData.Description = *m.Description
		}
		if m.CreatedTime != nil {
			a.MetaData.CreatedTime = *m.CreatedTime
		}
	case row.Txn != nil:
		a.Txn = &Txn{AppID: row.Txn.AppID, Version: row.Txn.Version}
		if row.Txn.LastUpdated != nil {
			a.Txn.LastUpdated = *row.Txn.LastUpdated
		}
	case row.Add != nil:
		ad := row.Add
		a.Add = &AddFile{Path: ad.Path, PartitionValues: ad.PartitionValues, Size: ad.Size,
			ModificationTime: ad.ModificationTime, DataChange: ad.DataChange, Tags: ad.Tags, DeletionVector: ad.DeletionVector.dv()}
		if ad.Stats != nil {
			a.Add.Stats = *ad.Stats
		}
	case row.Remove != nil:
		rm := row.Remove
		a.Remove = &RemoveFile{Path: rm.Path, DataChange: rm.DataChange, PartitionValues: rm.PartitionValues, DeletionVector: rm.DeletionVector.dv()}
		if rm.DeletionTimestamp != nil {
			a.Remove.DeletionTimestamp = *rm.DeletionTimestamp
		}
		if rm.Size != nil {
			a.Remove.Size = *rm.Size
		}
		if rm.ExtendedFileMetadata != nil {
			a.Remove.ExtendedFileMetadata = *rm.ExtendedFileMetadata
		}
	case row.Domain != nil:
		a.Domain = &DomainMetadata{Domain: row.Domain.Domain, Configuration: row.Domain.Configuration, Removed: row.Domain.Removed}
	case row.Sidecar != nil:
		a.Sidecar = &Sidecar{Path: row.Sidecar.Path, SizeInBytes: row.Sidecar.SizeInBytes, ModificationTime: row.Sidecar.ModificationTime, Tags: row.Sidecar.Tags}
	case row.CPMeta != nil:
		a.CheckpointMetadata = &CheckpointMetadata{Version: row.CPMeta.Version, Tags: row.CPMeta.Tags}
	default:
		return a, false
	}
	return a, true
}

// eachParquetAction calls fn with each action of a checkpoint (or sidecar)
// Parquet file. MAP columns are found by structure: the repeated group of a
// MAP is key_value in Spark's files and entries in parquet-rs's (delta-rs,
// delta-kernel-rs); both are read.
func eachParquetAction(ctx context.Context, data []byte, fn func(Action) error) (err error) {
	// The file comes from the lake: parquet-go may panic on a corrupt one.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrCorruptLog, r)
		}
	}()
	data, err = normalizeMapGroups(data)
	if err != nil {
		return err
	}
	f, err := OpenParquet(data)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptLog, err)
	}
	if parquet.EqualNodes(f.Schema(), sidecarSchema) {
		// pilake's own sidecars: read as they were written (no conversion
		// of every row to cpReadRow's schema; sidecars are many small files).
		return eachActionRow(ctx, f, func(r *cpSidecarRow) cpReadRow { return cpReadRow{Add: r.Add, Remove: r.Remove} }, fn)
	}
	return eachActionRow(ctx, f, func(r *cpReadRow) cpReadRow { return *r }, fn)
}

// sidecarSchema is the schema of the sidecar files pilake writes.
var sidecarSchema = parquet.SchemaOf(cpSidecarRow{})

// eachActionRow calls fn with the action of each row of f, read as T and
// converted by row.
func eachActionRow[T any](ctx context.Context, f *parquet.File, row func(*T) cpReadRow, fn func(Action) error) error {
	r := parquet.NewGenericReader[T](f)
	defer r.Close()
	buf := make([]T, 256)
	for {
		n, rerr := r.Read(buf)
		for i := range buf[:n] {
			cr := row(&buf[i])
			if a, ok := cr.action(); ok {
				if err := fn(a); err != nil {
					return err
				}
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("%w: %v", ErrCorruptLog, rerr)
		}
		if n == 0 {
			return fmt.Errorf("%w: no progress", ErrCorruptLog)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// normalizeMapGroups returns data with its footer's MAP groups' repeated
// child named key_value (what parquet-go's reader of Go maps looks for),
// whatever the writer named it (entries, map): the columns are found by the
// MAP's structure, not by the name of its middle group.
func normalizeMapGroups(data []byte) ([]byte, error) { return renameMapGroups(data, "key_value") }

// renameMapGroups names the repeated child of every MAP group to.
func renameMapGroups(data []byte, to string) ([]byte, error) {
	if len(data) < 12 || string(data[len(data)-4:]) != "PAR1" {
		return nil, fmt.Errorf("%w: not a Parquet file", ErrCorruptLog)
	}
	flen := int64(binary.LittleEndian.Uint32(data[len(data)-8:]))
	if flen > int64(len(data))-12 {
		return nil, fmt.Errorf("%w: footer of %d bytes in a %d-byte file", ErrCorruptLog, flen, len(data))
	}
	footer := data[int64(len(data))-8-flen : len(data)-8]
	var md format.FileMetaData
	if err := thrift.Unmarshal(new(thrift.CompactProtocol), footer, &md); err != nil {
		return nil, fmt.Errorf("%w: footer: %v", ErrCorruptLog, err)
	}
	type rename struct {
		parent []string
		from   string
	}
	var renames []rename
	var walk func(i int, parents []string) (int, error)
	walk = func(i int, parents []string) (int, error) {
		if i >= len(md.Schema) {
			return i, fmt.Errorf("%w: schema ends early", ErrCorruptLog)
		}
		el := &md.Schema[i]
		n := int(el.NumChildren.V)
		isMap := false
		if ct, ok := el.ConvertedType.Get(); ok && (ct == deprecated.Map || ct == deprecated.MapKeyValue) {
			isMap = true
		}
		if _, ok := el.LogicalType.Value.(*format.MapType); ok {
			isMap = true
		}
		here := append(slices.Clone(parents), el.Name)
		if i == 0 {
			here = nil // the root is not part of column paths
		}
		next := i + 1
		for c := 0; c < n; c++ {
			if isMap && c == 0 && next < len(md.Schema) {
				child := &md.Schema[next]
				if child.NumChildren.V == 2 && child.Name != to {
					renames = append(renames, rename{parent: here, from: child.Name})
					child.Name = to
				}
			}
			var err error
			if next, err = walk(next, here); err != nil {
				return next, err
			}
		}
		return next, nil
	}
	if len(md.Schema) == 0 {
		return nil, fmt.Errorf("%w: no schema", ErrCorruptLog)
	}
	if _, err := walk(0, nil); err != nil {
		return nil, err
	}
	if len(renames) == 0 {
		return data, nil
	}
	for g := range md.RowGroups {
		for c := range md.RowGroups[g].Columns {
			p := md.RowGroups[g].Columns[c].MetaData.PathInSchema
			for _, r := range renames {
				if len(p) > len(r.parent) && slices.Equal(p[:len(r.parent)], r.parent) && p[len(r.parent)] == r.from {
					p[len(r.parent)] = to
				}
			}
		}
	}
	nf, err := thrift.Marshal(new(thrift.CompactProtocol), &md)
	if err != nil {
		return nil, fmt.Errorf("%w: footer: %v", ErrCorruptLog, err)
	}
	out := make([]byte, 0, int64(len(data))-flen+int64(len(nf)))
	out = append(out, data[:int64(len(data))-8-flen]...)
	out = append(out, nf...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(nf)))
	return append(out, "PAR1"...), nil
}

// checkpointParts are the files of one checkpoint version, as found in a
// listing of _delta_log.
type checkpointParts struct {
	classic bool
	uuid    []string       // UUID-named (V2) checkpoint base names
	parts   map[int][]bool // part count → parts present (multi-part)
}

func (c *checkpointParts) add(base string) {
	rest := base[len("00000000000000000000.checkpoint."):]
	fields := strings.Split(rest, ".")
	switch {
	case rest == "parquet":
		c.classic = true
	case len(fields) == 2 && (fields[1] == "json" || fields[1] == "parquet"):
		c.uuid = append(c.uuid, base)
	case len(fields) == 3 && fields[2] == "parquet":
		p, err1 := strconv.Atoi(fields[0])
		n, err2 := strconv.Atoi(fields[1])
		if err1 != nil || err2 != nil || n < 1 || p < 1 || p > n || n > 1<<20 {
			return
		}
		if c.parts == nil {
			c.parts = map[int][]bool{}
		}
		if c.parts[n] == nil {
			c.parts[n] = make([]bool, n)
		}
		c.parts[n][p-1] = true
	}
}

// files returns the object names of a complete checkpoint (preferring a
// classic one, then a UUID-named one, then a complete multi-part one), or
// nil when none is complete.
func (c *checkpointParts) files(table string, v int64) []string {
	switch {
	case c == nil:
		return nil
	case c.classic:
		return []string{CheckpointName(table, v)}
	case len(c.uuid) > 0:
		slices.Sort(c.uuid)
		return []string{LogDir(table) + c.uuid[0]}
	}
	for _, n := range slices.Sorted(mapKeysInt(c.parts)) {
		if !slices.Contains(c.parts[n], false) {
			return multiPartNames(table, v, n)
		}
	}
	return nil
}

func mapKeysInt(m map[int][]bool) func(func(int) bool) {
	return func(yield func(int) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// multiPartNames are the names of the n parts of a multi-part checkpoint.
func multiPartNames(table string, v int64, n int) []string {
	out := make([]string, n)
	for i := range n {
		out[i] = fmt.Sprintf("%s%020d.checkpoint.%010d.%010d.parquet", LogDir(table), v, i+1, n)
	}
	return out
}

// isCheckpointName reports whether base (a direct child of _delta_log) is
// a checkpoint file of some kind, and its version.
func isCheckpointName(base string) (int64, bool) {
	if len(base) < 32 || base[20:32] != ".checkpoint." {
		return 0, false
	}
	v, err := strconv.ParseInt(base[:20], 10, 64)
	if err != nil || v < 0 {
		return 0, false
	}
	return v, strings.HasSuffix(base, ".parquet") || strings.HasSuffix(base, ".json")
}

// readCheckpoint replays checkpoint v from files (its classic file when
// nil): every part of a multi-part checkpoint, or a V2-spec checkpoint
// (UUID-named JSON or Parquet, or classic-named Parquet) and the sidecar
// files it names. A checkpointMetadata action must name version v; a
// sidecar must hold only add and remove actions.
func (s *Snapshot) readCheckpoint(ctx context.Context, l lake.Lake, table string, v int64, files []string) error {
	if len(files) == 0 {
		files = []string{CheckpointName(table, v)}
	}
	var total int64
	var sidecars []Sidecar
	var read, tombFiles []string
	refs := map[string]sidecarRef{}
	readOne := func(name string, sc *Sidecar) error {
		data, err := l.Get(ctx, name)
		if err != nil {
			return fmt.Errorf("reading checkpoint %d of %s: %w", v, table, err)
		}
		total += int64(len(data))
		read = append(read, name)
		var adds int64
		hasRemoves := false
		fn := func(a Action) error {
			switch {
			case sc != nil && a.Add == nil && a.Remove == nil:
				return fmt.Errorf("%w: sidecar %s holds an action other than add or remove", ErrCorruptLog, name)
			case a.Sidecar != nil:
				sidecars = append(sidecars, *a.Sidecar)
				return nil
			case a.CheckpointMetadata != nil:
				if a.CheckpointMetadata.Version != v {
					return fmt.Errorf("%w: checkpoint of version %d says version %d", ErrCorruptLog, v, a.CheckpointMetadata.Version)
				}
				return nil
			case a.Remove != nil:
				hasRemoves = true
				if s.lean {
					s.carried++
					return nil
				}
			}
			if err := s.apply([]Action{a}); err != nil {
				return err
			}
			if a.Add != nil && sc != nil {
				adds++
				if s.origin != nil {
					if p, err := fileKey(a.Add.Path, a.Add.DeletionVector); err == nil {
						s.origin[p] = name
					}
				}
			}
			return nil
		}
		if strings.HasSuffix(name, ".json") {
			actions, err := decodeCommit(data)
			if err != nil {
				return fmt.Errorf("reading checkpoint %d of %s: %w", v, table, err)
			}
			for _, a := range actions {
				if err := fn(a); err != nil {
					return fmt.Errorf("reading checkpoint %d of %s: %w", v, table, err)
				}
			}
		} else if err := eachParquetAction(ctx, data, fn); err != nil {
			return fmt.Errorf("reading checkpoint %d of %s (%s): %w", v, table, path.Base(name), err)
		}
		if hasRemoves {
			tombFiles = append(tombFiles, name)
		}
		if sc != nil {
			refs[name] = sidecarRef{action: *sc, adds: adds, removes: hasRemoves}
		}
		return nil
	}
	for _, name := range files {
		if err := readOne(name, nil); err != nil {
			return err
		}
	}
	for i := range sidecars {
		name, err := sidecarName(table, sidecars[i].Path)
		if err != nil {
			return fmt.Errorf("reading checkpoint %d of %s: %w", v, table, err)
		}
		if _, dup := refs[name]; dup {
			return fmt.Errorf("reading checkpoint %d of %s: %w: sidecar %s named twice", v, table, ErrCorruptLog, sidecars[i].Path)
		}
		if err := readOne(name, &sidecars[i]); err != nil {
			return err
		}
	}
	s.Version = v
	s.checkpoint, s.checkpointBytes = v, total
	s.checkpointFiles = read
	s.tombFiles = tombFiles
	s.sidecars = refs
	s.shedCold()
	return nil
}

// sidecarName maps a sidecar action's path (a file name in
// _delta_log/_sidecars, or a URI ending in one) to an object name.
func sidecarName(table, p string) (string, error) {
	c, err := CanonicalPath(p)
	if err != nil {
		return "", err
	}
	base := path.Base(c)
	if isAbsolute(p) && !strings.HasSuffix(path.Dir(c), "_delta_log/_sidecars") {
		return "", fmt.Errorf("sidecar outside _delta_log/_sidecars: %q: %w", p, ErrUnsupported)
	}
	if strings.Contains(strings.TrimPrefix(c, "_sidecars/"), "/") && !isAbsolute(p) {
		return "", fmt.Errorf("%w: sidecar path %q", ErrCorruptLog, p)
	}
	name := LogDir(table) + "_sidecars/" + base
	if err := lake.CheckName(name); err != nil {
		return "", fmt.Errorf("%w: sidecar path %q", ErrCorruptLog, p)
	}
	return name, nil
}

// eachCheckpointAction calls fn with each action of the given checkpoint
// objects (a checkpoint file, sidecars), read again from the lake.
func eachCheckpointAction(ctx context.Context, l lake.Lake, names []string, fn func(Action) error) error {
	for _, name := range names {
		data, err := l.Get(ctx, name)
		if err != nil {
			return fmt.Errorf("reading checkpoint %s: %w", name, err)
		}
		if strings.HasSuffix(name, ".json") {
			actions, err := decodeCommit(data)
			if err != nil {
				return fmt.Errorf("reading checkpoint %s: %w", name, err)
			}
			for _, a := range actions {
				if err := fn(a); err != nil {
					return err
				}
			}
			continue
		}
		if err := eachParquetAction(ctx, data, fn); err != nil {
			return fmt.Errorf("reading checkpoint %s: %w", name, err)
		}
	}
	return nil
}
