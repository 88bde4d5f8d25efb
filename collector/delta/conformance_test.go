package delta_test

// Conformance tests: tables shaped as Spark and delta-rs write them, built
// here (no Delta engine other than pilake's can run on these machines: no
// Spark, delta-rs or Delta Kernel; see FACTS.md), each with the rows a
// correct reader returns. Data files come from Apache Arrow's Go writer
// (INT96 timestamps as Spark writes them, both page versions) and from
// parquet-go; logs and checkpoints are written by hand as the protocol
// describes them (table features, multi-part and V2 checkpoints with
// sidecars, deletion vectors, column mapping), with the examples of
// PROTOCOL.md.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2/roaring64"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	arrowpq "github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
)

// confRow is the row type the conformance tables are read as.
type confRow struct {
	ID   int64   `parquet:"id"`
	TS   int64   `parquet:"ts,timestamp(microsecond)"`
	Name string  `parquet:"name"`
	V    float64 `parquet:"v"`
	Part string  `parquet:"part"`
}

const confSchema = `{"type":"struct","fields":[` +
	`{"name":"id","type":"long","nullable":true,"metadata":{}},` +
	`{"name":"ts","type":"timestamp","nullable":true,"metadata":{}},` +
	`{"name":"name","type":"string","nullable":true,"metadata":{}},` +
	`{"name":"v","type":"double","nullable":true,"metadata":{}},` +
	`{"name":"part","type":"string","nullable":true,"metadata":{}}]}`

// logWriter writes a table's _delta_log by hand.
type logWriter struct {
	t     *testing.T
	l     lake.Lake
	table string
}

func (w logWriter) commit(v int64, actions ...any) {
	w.t.Helper()
	var b bytes.Buffer
	for _, a := range actions {
		line, err := json.Marshal(a)
		if err != nil {
			w.t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := w.l.Put(w.t.Context(), delta.CommitName(w.table, v), b.Bytes()); err != nil {
		w.t.Fatal(err)
	}
}

func (w logWriter) put(name string, data []byte) {
	w.t.Helper()
	if err := w.l.Put(w.t.Context(), w.table+"/"+name, data); err != nil {
		w.t.Fatal(err)
	}
}

type obj = map[string]any

func protocol(reader, writer int, rf, wf []string) obj {
	p := obj{"minReaderVersion": reader, "minWriterVersion": writer}
	if rf != nil {
		p["readerFeatures"] = rf
	}
	if wf != nil {
		p["writerFeatures"] = wf
	}
	return obj{"protocol": p}
}

func metadata(schema string, parts []string, conf map[string]string) obj {
	if conf == nil {
		conf = map[string]string{}
	}
	return obj{"metaData": obj{"id": "00000000-0000-0000-0000-000000000001", "format": obj{"provider": "parquet", "options": obj{}},
		"schemaString": schema, "partitionColumns": parts, "configuration": conf, "createdTime": 1}}
}

func addAction(path string, part map[string]string, size int, extra obj) obj {
	a := obj{"path": path, "partitionValues": part, "size": size, "modificationTime": 1, "dataChange": true}
	for k, v := range extra {
		a[k] = v
	}
	return obj{"add": a}
}

// arrowFile writes rows (id, ts, name, v) with Apache Arrow's Go Parquet
// writer; int96 writes the timestamps as Spark does by default.
func arrowFile(t *testing.T, rows []confRow, int96 bool, pageVersion arrowpq.DataPageVersion) []byte {
	t.Helper()
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "v", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	for _, r := range rows {
		b.Field(0).(*array.Int64Builder).Append(r.ID)
		b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(r.TS))
		if r.Name == "<null>" {
			b.Field(2).(*array.StringBuilder).AppendNull()
		} else {
			b.Field(2).(*array.StringBuilder).Append(r.Name)
		}
		b.Field(3).(*array.Float64Builder).Append(r.V)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	tbl := array.NewTableFromRecords(sc, []arrow.RecordBatch{rec})
	defer tbl.Release()
	var buf bytes.Buffer
	props := arrowpq.NewWriterProperties(arrowpq.WithDataPageVersion(pageVersion), arrowpq.WithDictionaryDefault(false))
	if err := pqarrow.WriteTable(tbl, &buf, 1024, props, pqarrow.NewArrowWriterProperties(pqarrow.WithDeprecatedInt96Timestamps(int96))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readConf(t *testing.T, l lake.Lake, table string) ([]confRow, error) {
	t.Helper()
	rows, err := delta.ReadTable[confRow](t.Context(), l, table, nil)
	slices.SortFunc(rows, func(a, b confRow) int { return int(a.ID - b.ID) })
	return rows, err
}

// TestSparkShapedTable: INT96 timestamps (Spark's default), optional
// columns, DataPageV1 and DataPageV2 files, an escaped partition
// directory, reader v1 / writer v7 with writer features pilake does not
// write: read exactly; compaction refuses to rewrite the INT96 files
// (ErrCannotCompact) and leaves them as they were; pilake does not write
// to the table (ErrUnsupported).
func TestSparkShapedTable(t *testing.T) {
	ctx := t.Context()
	l := lake.NewMemory()
	w := logWriter{t, l, "spark"}
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	a := []confRow{{ID: 1, TS: 1_000_000, Name: "one", V: 1.5}, {ID: 2, TS: day + 1, Name: "two", V: -2}}
	b := []confRow{{ID: 3, TS: -86_400_000_000 + 7, Name: "three", V: 3}, {ID: 4, TS: day + 86_399_999_999, Name: "", V: 4}}
	fa := arrowFile(t, a, true, arrowpq.DataPageV1)
	fb := arrowFile(t, b, true, arrowpq.DataPageV2)
	w.put("part=a%3Ab/part-00000-a.c000.snappy.parquet", fa)
	w.put("part=c d/part-00001-b.c000.snappy.parquet", fb)
	stats := `{"numRecords":2,"minValues":{"ts":"1970-01-01T00:00:01.000Z"},"maxValues":{"ts":"2026-03-01T00:00:00.000Z"},"nullCount":{"id":0}}`
	w.commit(0, protocol(1, 7, nil, []string{"appendOnly", "invariants", "generatedColumns"}), metadata(confSchema, []string{"part"}, nil))
	w.commit(1, addAction("part=a%253Ab/part-00000-a.c000.snappy.parquet", map[string]string{"part": "a:b"}, len(fa), obj{"stats": stats}),
		addAction("part=c%20d/part-00001-b.c000.snappy.parquet", map[string]string{"part": "c d"}, len(fb), obj{"stats": stats}))

	want := []confRow{{1, 1_000_000, "one", 1.5, "a:b"}, {2, day + 1, "two", -2, "a:b"}, {3, -86_400_000_000 + 7, "three", 3, "c d"}, {4, day + 86_399_999_999, "", 4, "c d"}}
	got, err := readConf(t, l, "spark")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows\n%+v\nwant\n%+v", got, want)
	}
	// 00:00:01 stays 00:00:01 (it once came back as 00:16:40).
	if got[0].TS != 1_000_000 {
		t.Errorf("INT96 00:00:01 read as %v", time.UnixMicro(got[0].TS).UTC())
	}

	// generatedColumns is a writer feature pilake does not honour.
	if _, err := delta.Open[confRow](ctx, l, "spark", delta.Options{PartitionColumns: []string{"part"}}); !errors.Is(err, delta.ErrUnsupported) {
		t.Fatalf("Open for writing: %v, want ErrUnsupported", err)
	}
	// Without it, pilake may write, but compaction must not rewrite the
	// INT96 files.
	w.commit(2, protocol(1, 7, nil, []string{"appendOnly", "invariants"}))
	tb, err := delta.Open[confRow](ctx, l, "spark", delta.Options{PartitionColumns: []string{"part"}, Now: func() time.Time { return time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	// A second file in partition a so that compaction has a pair to merge.
	w.put("part=a%3Ab/part-00002-c.c000.snappy.parquet", fa)
	w.commit(3, addAction("part=a%253Ab/part-00002-c.c000.snappy.parquet", map[string]string{"part": "a:b"}, len(fa), obj{"stats": stats}))
	if err := tb.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := delta.Compact[confRow](ctx, tb, delta.CompactOptions{MinFiles: 2}); !errors.Is(err, delta.ErrCannotCompact) {
		t.Fatalf("Compact of INT96 files: %v, want ErrCannotCompact", err)
	}
	if data, _ := l.Get(ctx, "spark/part=a%3Ab/part-00000-a.c000.snappy.parquet"); !bytes.Equal(data, fa) {
		t.Error("the INT96 file changed")
	}
	if snap, err := delta.Load(ctx, l, "spark"); err != nil || snap.Version != 3 {
		t.Fatalf("compaction committed something: %v", err)
	}
}

// TestReaderSaysNo: what cannot be converted exactly is an error, never a
// value.
func TestReaderSaysNo(t *testing.T) {
	for name, c := range map[string]struct {
		file   func(t *testing.T) []byte
		schema string
	}{
		"INT96 not a whole microsecond": {file: func(t *testing.T) []byte {
			type r struct {
				ID   int64            `parquet:"id"`
				TS   deprecated.Int96 `parquet:"ts"`
				Name string           `parquet:"name"`
				V    float64          `parquet:"v"`
			}
			return pqFile(t, []r{{ID: 1, TS: deprecated.Int96{1500, 0, 2440588}, Name: "x"}})
		}},
		"null string": {file: func(t *testing.T) []byte {
			return arrowFile(t, []confRow{{ID: 1, Name: "<null>"}}, false, arrowpq.DataPageV1)
		}},
		"double read as long": {file: func(t *testing.T) []byte {
			type r struct {
				ID   float64 `parquet:"id"`
				TS   int64   `parquet:"ts,timestamp(microsecond)"`
				Name string  `parquet:"name"`
				V    float64 `parquet:"v"`
			}
			return pqFile(t, []r{{ID: 1.5}})
		}},
		"missing column": {file: func(t *testing.T) []byte {
			type r struct {
				ID int64 `parquet:"id"`
			}
			return pqFile(t, []r{{ID: 1}})
		}},
		"timestamp in nanoseconds, not whole microseconds": {file: func(t *testing.T) []byte {
			type r struct {
				ID   int64   `parquet:"id"`
				TS   int64   `parquet:"ts,timestamp(nanosecond)"`
				Name string  `parquet:"name"`
				V    float64 `parquet:"v"`
			}
			return pqFile(t, []r{{ID: 1, TS: 1001}})
		}},
	} {
		t.Run(name, func(t *testing.T) {
			l := lake.NewMemory()
			w := logWriter{t, l, "no"}
			data := c.file(t)
			w.put("f.parquet", data)
			w.commit(0, protocol(1, 2, nil, nil), metadata(confSchema, []string{"part"}, nil))
			w.commit(1, addAction("f.parquet", map[string]string{"part": "p"}, len(data), nil))
			if rows, err := readConf(t, l, "no"); !errors.Is(err, delta.ErrInexact) {
				t.Errorf("read %v, %v; want ErrInexact", rows, err)
			}
		})
	}
	// The same conversions, exact: read.
	if us, err := delta.Int96Micros([3]uint32{1_000_000_000, 0, 2440588}); err != nil || us != 1_000_000 {
		t.Errorf("Int96Micros(1 s on 1970-01-01) = %d, %v", us, err)
	}
	if us, err := delta.Int96Micros([3]uint32{0, 0, 2440587}); err != nil || us != -86_400_000_000 {
		t.Errorf("Int96Micros(1969-12-31) = %d, %v", us, err)
	}
}

func pqFile[T any](t *testing.T, rows []T, opts ...parquet.WriterOption) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[T](&buf, opts...)
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// idRows are n rows with ids 0..n-1, written by parquet-go.
func idRows(t *testing.T, n int) ([]confRow, []byte) {
	type r struct {
		ID   int64   `parquet:"id"`
		TS   int64   `parquet:"ts,timestamp(microsecond)"`
		Name string  `parquet:"name"`
		V    float64 `parquet:"v"`
	}
	var rows []r
	var want []confRow
	for i := range n {
		rows = append(rows, r{ID: int64(i), TS: int64(i) * 1000, Name: fmt.Sprint("n", i), V: float64(i) / 2})
		want = append(want, confRow{ID: int64(i), TS: int64(i) * 1000, Name: fmt.Sprint("n", i), V: float64(i) / 2, Part: "p"})
	}
	return want, pqFile(t, rows)
}

func without(rows []confRow, ids ...int64) []confRow {
	return slices.DeleteFunc(slices.Clone(rows), func(r confRow) bool { return slices.Contains(ids, r.ID) })
}

// z85Encode is the Z85 encoding (RFC 32), for building deletion vector
// descriptors in tests.
func z85Encode(b []byte) string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
	var s strings.Builder
	for i := 0; i+4 <= len(b); i += 4 {
		v := binary.BigEndian.Uint32(b[i:])
		var d [5]byte
		for j := 4; j >= 0; j-- {
			d[j] = alphabet[v%85]
			v /= 85
		}
		s.Write(d[:])
	}
	return s.String()
}

// TestDeletionVectors: an inline DV (PROTOCOL.md's example bitmap: rows 3,
// 4, 7, 11, 18 and 29 deleted), an on-disk DV with a random prefix after
// another DV in its file (PROTOCOL.md's UUID example), the native format,
// a DV update in one commit; PROTOCOL.md's inline text (big-endian magic)
// and a descriptor whose cardinality does not match are errors.
func TestDeletionVectors(t *testing.T) {
	// PROTOCOL.md, JSON Example 1: the file name derived from the UUID.
	if got, err := delta.DVRelPath("ab^-aqEH.-t@S}K{vb[*k^"); err != nil || got != "ab/deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin" {
		t.Errorf("DVRelPath = %q, %v", got, err)
	}
	ctx := t.Context()
	l := lake.NewMemory()
	w := logWriter{t, l, "dv"}
	want, data := idRows(t, 30)
	w.put("inline.parquet", data)
	w.put("disk.parquet", data)

	// On disk: a DV file holding one DV after another, as Delta writes them.
	bm := roaring64.BitmapOf(0, 5, 28)
	var ser bytes.Buffer
	_ = binary.Write(&ser, binary.LittleEndian, uint32(1681511377))
	if _, err := bm.WriteTo(&ser); err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	file.WriteByte(1)
	file.Write([]byte{0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0, 0}) // another DV before ours
	off := file.Len()
	_ = binary.Write(&file, binary.BigEndian, uint32(ser.Len()))
	file.Write(ser.Bytes())
	_ = binary.Write(&file, binary.BigEndian, crc32.ChecksumIEEE(ser.Bytes()))
	uuid := []byte{0xd2, 0xc6, 0x39, 0xaa, 0x88, 0x16, 0x43, 0x1a, 0xaa, 0xf6, 0xd3, 0xfe, 0x25, 0x12, 0xff, 0x61}
	w.put("xy/deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin", file.Bytes())

	// Inline: rows 3, 4, 7, 11, 18 and 29, PROTOCOL.md's example bitmap,
	// in the portable format (the example's own text has the magic number
	// in big-endian byte order, which Delta's readers refuse: see
	// delta-io/delta#3063; it is refused here too, below).
	var inl bytes.Buffer
	_ = binary.Write(&inl, binary.LittleEndian, uint32(1681511377))
	if _, err := roaring64.BitmapOf(3, 4, 7, 11, 18, 29).WriteTo(&inl); err != nil {
		t.Fatal(err)
	}
	inlineSize := inl.Len()
	for inl.Len()%4 != 0 {
		inl.WriteByte(0)
	}
	inline := z85Encode(inl.Bytes())

	feat := []string{"deletionVectors"}
	w.commit(0, protocol(3, 7, feat, feat), metadata(confSchema, []string{"part"}, map[string]string{"delta.enableDeletionVectors": "true"}))
	w.commit(1,
		addAction("inline.parquet", map[string]string{"part": "p"}, len(data), obj{"deletionVector": obj{
			"storageType": "i", "pathOrInlineDv": inline, "sizeInBytes": inlineSize, "cardinality": 6}}),
		addAction("disk.parquet", map[string]string{"part": "p"}, len(data), obj{"deletionVector": obj{
			"storageType": "u", "pathOrInlineDv": "xy" + z85Encode(uuid), "offset": off, "sizeInBytes": ser.Len(), "cardinality": 3}}))
	got, err := delta.ReadTable[confRow](ctx, l, "dv", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Files in path order: disk.parquet, then inline.parquet.
	if w1, w2 := without(want, 0, 5, 28), without(want, 3, 4, 7, 11, 18, 29); !slices.Equal(got, append(w1, w2...)) {
		t.Errorf("rows %v\nwant %v then %v", got, w1, w2)
	}

	// A DV update: remove (path, old DV) and add (path, new DV) in one
	// commit, in either order, leaves one logical file.
	w.commit(2,
		addAction("inline.parquet", map[string]string{"part": "p"}, len(data), obj{"deletionVector": obj{
			"storageType": "u", "pathOrInlineDv": "xy" + z85Encode(uuid), "offset": off, "sizeInBytes": ser.Len(), "cardinality": 3}}),
		obj{"remove": obj{"path": "inline.parquet", "deletionTimestamp": 5, "dataChange": true, "deletionVector": obj{
			"storageType": "i", "pathOrInlineDv": inline, "sizeInBytes": inlineSize, "cardinality": 6}}})
	if got, err := delta.ReadTable[confRow](ctx, l, "dv", nil); err != nil || len(got) != 54 {
		t.Errorf("after the DV update: %d rows, %v; want 54", len(got), err)
	}

	// PROTOCOL.md's inline example as printed: its first word is the
	// native format's magic number in big-endian order; Delta's readers
	// take it little-endian and refuse it, and so does this one.
	w.commit(3, addAction("inline.parquet", map[string]string{"part": "p"}, len(data), obj{"deletionVector": obj{
		"storageType": "i", "pathOrInlineDv": "wi5b=000010000siXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L", "sizeInBytes": 40, "cardinality": 6}}))
	if _, err := delta.ReadTable[confRow](ctx, l, "dv", nil); !errors.Is(err, delta.ErrCorruptFile) {
		t.Errorf("PROTOCOL.md's big-endian inline example: %v, want ErrCorruptFile", err)
	}
	// The native format (magic 1681511376, little-endian), as older Delta
	// writers serialised DVs: rows 1 and 2.
	var native bytes.Buffer
	_ = binary.Write(&native, binary.LittleEndian, uint32(1681511376))
	_ = binary.Write(&native, binary.LittleEndian, uint32(1))
	var b32 bytes.Buffer
	if _, err := roaring64.BitmapOf(1, 2).WriteTo(&b32); err != nil { // portable 64: 8-byte count, 4-byte key, then the 32-bit bitmap
		t.Fatal(err)
	}
	_ = binary.Write(&native, binary.LittleEndian, uint32(b32.Len()-12))
	native.Write(b32.Bytes()[12:])
	nativeSize := native.Len()
	for native.Len()%4 != 0 {
		native.WriteByte(0)
	}
	w.commit(4, addAction("inline.parquet", map[string]string{"part": "p"}, len(data), obj{"deletionVector": obj{
		"storageType": "i", "pathOrInlineDv": z85Encode(native.Bytes()), "sizeInBytes": nativeSize, "cardinality": 2}}),
		obj{"remove": obj{"path": "inline.parquet", "deletionTimestamp": 5, "dataChange": true, "deletionVector": obj{
			"storageType": "i", "pathOrInlineDv": "wi5b=000010000siXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L", "sizeInBytes": 40, "cardinality": 6}}},
		obj{"remove": obj{"path": "inline.parquet", "deletionTimestamp": 5, "dataChange": true, "deletionVector": obj{
			"storageType": "u", "pathOrInlineDv": "xy" + z85Encode(uuid), "offset": off, "sizeInBytes": ser.Len(), "cardinality": 3}}})
	if got, err := delta.ReadTable[confRow](ctx, l, "dv", nil); err != nil || !slices.Equal(got, append(without(want, 0, 5, 28), without(want, 1, 2)...)) {
		t.Errorf("native-format DV: %v, %v", got, err)
	}

	// A wrong cardinality: an error, not rows.
	w.commit(5, addAction("disk.parquet", map[string]string{"part": "p"}, len(data), obj{"deletionVector": obj{
		"storageType": "u", "pathOrInlineDv": "xy" + z85Encode(uuid), "offset": off, "sizeInBytes": ser.Len(), "cardinality": 4}}))
	if _, err := delta.ReadTable[confRow](ctx, l, "dv", nil); !errors.Is(err, delta.ErrCorruptFile) {
		t.Errorf("DV with a wrong cardinality: %v", err)
	}

	// Compaction leaves files with a DV alone.
	var skipped []string
	tb, err := delta.Open[confRow](ctx, l, "dv", delta.Options{PartitionColumns: []string{"part"}})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := delta.Compact[confRow](ctx, tb, delta.CompactOptions{MinFiles: 2, Skipped: func(f delta.AddFile, err error) {
		skipped = append(skipped, f.Path)
	}}); err != nil || n != 0 {
		t.Errorf("Compact with DVs: %d, %v", n, err)
	}
	_ = skipped // files without statistics are not candidates either way
}

// TestColumnMapping: physical column names (mode name) and field ids (mode
// id), with reader version 2 and 3.
func TestColumnMapping(t *testing.T) {
	type phys struct {
		ID   int64   `parquet:"col-1f0a,id(1)"`
		TS   int64   `parquet:"col-2b11,timestamp(microsecond),id(2)"`
		Name string  `parquet:"col-3c22,id(3)"`
		V    float64 `parquet:"col-4d33,id(4)"`
	}
	// In id mode the names need not match anything: resolve by id.
	type byID struct {
		V    float64 `parquet:"x4,id(4)"`
		Name string  `parquet:"x3,id(3)"`
		TS   int64   `parquet:"x2,timestamp(microsecond),id(2)"`
		ID   int64   `parquet:"x1,id(1)"`
	}
	field := func(name, typ, physName string, id int) string {
		return fmt.Sprintf(`{"name":%q,"type":%q,"nullable":true,"metadata":{"delta.columnMapping.id":%d,"delta.columnMapping.physicalName":%q}}`, name, typ, id, physName)
	}
	schema := `{"type":"struct","fields":[` + strings.Join([]string{field("id", "long", "col-1f0a", 1), field("ts", "timestamp", "col-2b11", 2),
		field("name", "string", "col-3c22", 3), field("v", "double", "col-4d33", 4), field("part", "string", "col-5e44", 5)}, ",") + `]}`
	want := []confRow{{ID: 7, TS: 70, Name: "seven", V: 0.7, Part: "p"}, {ID: 8, TS: 80, Name: "eight", V: 0.8, Part: "p"}}
	for _, c := range []struct {
		mode    string
		reader  int
		file    []byte
		feature []string
	}{
		{"name", 2, pqFile(t, []phys{{7, 70, "seven", 0.7}, {8, 80, "eight", 0.8}}), nil},
		{"id", 3, pqFile(t, []byID{{0.7, "seven", 70, 7}, {0.8, "eight", 80, 8}}), []string{"columnMapping"}},
	} {
		t.Run(c.mode, func(t *testing.T) {
			l := lake.NewMemory()
			w := logWriter{t, l, "cm"}
			w.put("a/f.parquet", c.file)
			wf := []string(nil)
			if c.feature != nil {
				wf = c.feature
			}
			w.commit(0, protocol(c.reader, 7, c.feature, wf), metadata(schema, []string{"part"}, map[string]string{"delta.columnMapping.mode": c.mode, "delta.columnMapping.maxColumnId": "5"}))
			w.commit(1, addAction("a/f.parquet", map[string]string{"part": "p"}, len(c.file), nil))
			got, err := readConf(t, l, "cm")
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("rows %+v, %v; want %+v", got, err, want)
			}
			// pilake does not write column-mapped tables.
			if _, err := delta.Open[confRow](t.Context(), l, "cm", delta.Options{PartitionColumns: []string{"part"}}); !errors.Is(err, delta.ErrUnsupported) {
				t.Errorf("Open for writing: %v", err)
			}
		})
	}
}

// TestTimestampNtz: a timestamp_ntz column (INT64 TIMESTAMP(MICROS,
// isAdjustedToUTC=false), as Spark writes it) reads as its wall-clock
// microseconds.
func TestTimestampNtz(t *testing.T) {
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Microsecond}},
		{Name: "name", Type: arrow.BinaryTypes.String},
		{Name: "v", Type: arrow.PrimitiveTypes.Float64},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	b.Field(0).(*array.Int64Builder).Append(1)
	b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(1_234_567))
	b.Field(2).(*array.StringBuilder).Append("x")
	b.Field(3).(*array.Float64Builder).Append(1)
	rec := b.NewRecordBatch()
	defer rec.Release()
	tbl := array.NewTableFromRecords(sc, []arrow.RecordBatch{rec})
	defer tbl.Release()
	var buf bytes.Buffer
	if err := pqarrow.WriteTable(tbl, &buf, 1024, arrowpq.NewWriterProperties(), pqarrow.NewArrowWriterProperties()); err != nil {
		t.Fatal(err)
	}
	l := lake.NewMemory()
	w := logWriter{t, l, "ntz"}
	w.put("f.parquet", buf.Bytes())
	schema := strings.Replace(confSchema, `"ts","type":"timestamp"`, `"ts","type":"timestamp_ntz"`, 1)
	feat := []string{"timestampNtz"}
	w.commit(0, protocol(3, 7, feat, feat), metadata(schema, []string{"part"}, nil))
	w.commit(1, addAction("f.parquet", map[string]string{"part": "p"}, buf.Len(), nil))
	got, err := readConf(t, l, "ntz")
	if err != nil || len(got) != 1 || got[0].TS != 1_234_567 {
		t.Errorf("rows %+v, %v", got, err)
	}
}

// cpAddRow is a checkpoint row holding an add action, as Spark and
// delta-rs write them.
type cpAddRow struct {
	Add *struct {
		Path             string            `parquet:"path"`
		PartitionValues  map[string]string `parquet:"partitionValues"`
		Size             int64             `parquet:"size"`
		ModificationTime int64             `parquet:"modificationTime"`
		DataChange       bool              `parquet:"dataChange"`
		Tags             map[string]string `parquet:"tags,optional"`
	} `parquet:"add,optional"`
	MetaData *struct {
		ID     string `parquet:"id"`
		Format struct {
			Provider string `parquet:"provider"`
		} `parquet:"format"`
		SchemaString     string            `parquet:"schemaString"`
		PartitionColumns []string          `parquet:"partitionColumns,list"`
		Configuration    map[string]string `parquet:"configuration"`
	} `parquet:"metaData,optional"`
	Protocol *struct {
		MinReaderVersion int32    `parquet:"minReaderVersion"`
		MinWriterVersion int32    `parquet:"minWriterVersion"`
		ReaderFeatures   []string `parquet:"readerFeatures,optional,list"`
		WriterFeatures   []string `parquet:"writerFeatures,optional,list"`
	} `parquet:"protocol,optional"`
}

func cpAdd(path string, part map[string]string, size int) cpAddRow {
	var r cpAddRow
	r.Add = &struct {
		Path             string            `parquet:"path"`
		PartitionValues  map[string]string `parquet:"partitionValues"`
		Size             int64             `parquet:"size"`
		ModificationTime int64             `parquet:"modificationTime"`
		DataChange       bool              `parquet:"dataChange"`
		Tags             map[string]string `parquet:"tags,optional"`
	}{Path: path, PartitionValues: part, Size: int64(size), ModificationTime: 1, Tags: map[string]string{"k": "v"}}
	return r
}

func cpHead(reader, writer int32, rf, wf []string, conf map[string]string) []cpAddRow {
	var p, m cpAddRow
	p.Protocol = &struct {
		MinReaderVersion int32    `parquet:"minReaderVersion"`
		MinWriterVersion int32    `parquet:"minWriterVersion"`
		ReaderFeatures   []string `parquet:"readerFeatures,optional,list"`
		WriterFeatures   []string `parquet:"writerFeatures,optional,list"`
	}{reader, writer, rf, wf}
	m.MetaData = &struct {
		ID     string `parquet:"id"`
		Format struct {
			Provider string `parquet:"provider"`
		} `parquet:"format"`
		SchemaString     string            `parquet:"schemaString"`
		PartitionColumns []string          `parquet:"partitionColumns,list"`
		Configuration    map[string]string `parquet:"configuration"`
	}{ID: "id", SchemaString: confSchema, PartitionColumns: []string{"part"}, Configuration: conf}
	m.MetaData.Format.Provider = "parquet"
	return []cpAddRow{p, m}
}

// TestCheckpointShapes: checkpoints as Spark writes them (MAP groups named
// key_value, DataPageV1) and as delta-rs writes them (entries, DataPageV2);
// a multi-part checkpoint, one with a part missing (ignored), and a V2
// UUID-named checkpoint with sidecars; older commits deleted, so the
// checkpoint decides. partitionValues, tags and configuration must survive.
func TestCheckpointShapes(t *testing.T) {
	want, data := idRows(t, 3)
	withPart := func(p string) []confRow {
		out := slices.Clone(want)
		for i := range out {
			out[i].Part = p
		}
		return out
	}
	type shape struct {
		name  string
		build func(t *testing.T, w logWriter) // writes checkpoint 1 (and _last_checkpoint)
	}
	parquetCP := func(rows []cpAddRow, mapGroup string, page int) []byte {
		b := pqFile(t, rows, parquet.DataPageVersion(page))
		if mapGroup != "key_value" {
			var err error
			if b, err = delta.RenameMapGroups(b, mapGroup); err != nil {
				t.Fatal(err)
			}
		}
		return b
	}
	conf := map[string]string{"delta.appendOnly": "false", "pilake.test": "kept"}
	all := append(cpHead(1, 2, nil, nil, conf), cpAdd("part=x/a.parquet", map[string]string{"part": "x"}, len(data)), cpAdd("part=y/b.parquet", map[string]string{"part": "y"}, len(data)))
	for _, s := range []shape{
		{"spark key_value", func(t *testing.T, w logWriter) {
			w.put("_delta_log/00000000000000000001.checkpoint.parquet", parquetCP(all, "key_value", 1))
			w.put("_delta_log/_last_checkpoint", []byte(`{"version":1,"size":4}`))
		}},
		{"delta-rs entries", func(t *testing.T, w logWriter) {
			w.put("_delta_log/00000000000000000001.checkpoint.parquet", parquetCP(all, "entries", 2))
			w.put("_delta_log/_last_checkpoint", []byte(`{"version":1,"size":4}`))
		}},
		{"multi-part", func(t *testing.T, w logWriter) {
			w.put("_delta_log/00000000000000000001.checkpoint.0000000001.0000000002.parquet", parquetCP(all[:3], "key_value", 1))
			w.put("_delta_log/00000000000000000001.checkpoint.0000000002.0000000002.parquet", parquetCP(all[3:], "entries", 1))
			w.put("_delta_log/_last_checkpoint", []byte(`{"version":1,"size":4,"parts":2}`))
		}},
		{"v2 with sidecars", func(t *testing.T, w logWriter) {
			head, _ := json.Marshal(protocol(3, 7, []string{"v2Checkpoint"}, []string{"v2Checkpoint"}))
			md, _ := json.Marshal(metadata(confSchema, []string{"part"}, conf))
			cp := `{"checkpointMetadata":{"version":1}}` + "\n" + string(head) + "\n" + string(md) + "\n" +
				`{"sidecar":{"path":"016ae953-37a9-438e-8683-9a9a4a79a395.parquet","sizeInBytes":1,"modificationTime":1}}` + "\n" +
				`{"sidecar":{"path":"7d17ac10-5cc3-401b-bd1a-9c82dd2ea032.parquet","sizeInBytes":1,"modificationTime":1}}` + "\n"
			w.put("_delta_log/00000000000000000001.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.json", []byte(cp))
			w.put("_delta_log/_sidecars/016ae953-37a9-438e-8683-9a9a4a79a395.parquet", parquetCP(all[2:3], "entries", 2))
			w.put("_delta_log/_sidecars/7d17ac10-5cc3-401b-bd1a-9c82dd2ea032.parquet", parquetCP(all[3:], "key_value", 1))
			w.put("_delta_log/_last_checkpoint", []byte(`{"version":1,"size":5}`))
		}},
	} {
		t.Run(s.name, func(t *testing.T) {
			ctx := t.Context()
			l := lake.NewMemory()
			w := logWriter{t, l, "cp"}
			w.put("part=x/a.parquet", data)
			w.put("part=y/b.parquet", data)
			w.put("part=z/c.parquet", data)
			s.build(t, w)
			// A multi-part checkpoint at 2 with a part missing must be ignored.
			w.put("_delta_log/00000000000000000002.checkpoint.0000000001.0000000002.parquet", parquetCP(all[:3], "key_value", 1))
			w.commit(2, addAction("part=z/c.parquet", map[string]string{"part": "z"}, len(data), nil))
			wantAll := append(append(withPart("x"), withPart("y")...), withPart("z")...)
			for _, how := range []string{"_last_checkpoint", "listing"} {
				if how == "listing" {
					if err := l.Delete(ctx, "cp/_delta_log/_last_checkpoint"); err != nil {
						t.Fatal(err)
					}
				}
				snap, err := delta.Load(ctx, l, "cp")
				if err != nil {
					t.Fatalf("%s: %v", how, err)
				}
				if snap.Metadata.Configuration["pilake.test"] != "kept" {
					t.Errorf("%s: configuration %v lost", how, snap.Metadata.Configuration)
				}
				for _, f := range snap.Files() {
					if f.Path != "part=z/c.parquet" && f.Tags["k"] != "v" {
						t.Errorf("%s: tags of %s lost: %v", how, f.Path, f.Tags)
					}
				}
				got, err := delta.ReadFiles[confRow](ctx, l, "cp", snap.Files(), nil)
				if err != nil || !slices.Equal(got, wantAll) {
					t.Errorf("%s: rows %+v, %v\nwant %+v", how, got, err, wantAll)
				}
			}
		})
	}
}

// TestProtocolChecks: reader and writer versions are checked separately;
// a log without protocol or metadata is an error; a stray file below
// _delta_log is not part of the log.
func TestProtocolChecks(t *testing.T) {
	_, data := idRows(t, 1)
	for name, c := range map[string]struct {
		head    []any
		readErr error
	}{
		"reader 1, writer 7 with unknown writer features": {[]any{protocol(1, 7, nil, []string{"someFutureWriterFeature"}), metadata(confSchema, []string{"part"}, nil)}, nil},
		"reader 3 with an unknown reader feature":         {[]any{protocol(3, 7, []string{"someFutureReaderFeature"}, []string{"someFutureReaderFeature"}), metadata(confSchema, []string{"part"}, nil)}, delta.ErrUnsupported},
		"reader 4":    {[]any{protocol(4, 7, nil, nil), metadata(confSchema, []string{"part"}, nil)}, delta.ErrUnsupported},
		"no protocol": {[]any{metadata(confSchema, []string{"part"}, nil)}, delta.ErrCorruptLog},
		"no metadata": {[]any{protocol(1, 2, nil, nil)}, delta.ErrCorruptLog},
	} {
		t.Run(name, func(t *testing.T) {
			l := lake.NewMemory()
			w := logWriter{t, l, "p"}
			w.put("f.parquet", data)
			w.commit(0, c.head...)
			w.commit(1, addAction("f.parquet", map[string]string{"part": "p"}, len(data), nil))
			w.put("_delta_log/.tmp/00000000000000000002.json", []byte("garbage"))
			_, err := readConf(t, l, "p")
			if c.readErr == nil && err != nil || c.readErr != nil && !errors.Is(err, c.readErr) {
				t.Errorf("read: %v, want %v", err, c.readErr)
			}
			if c.readErr == nil {
				if _, err := delta.Open[confRow](t.Context(), l, "p", delta.Options{PartitionColumns: []string{"part"}}); !errors.Is(err, delta.ErrUnsupported) {
					t.Errorf("Open for writing: %v, want ErrUnsupported", err)
				}
			}
		})
	}
}

// TestInCommitTimestamps: on a table with In-Commit Timestamps (as
// Databricks enables them on managed tables), pilake's commits put
// commitInfo first with an inCommitTimestamp after the previous commit's,
// also when its Table starts from a checkpoint.
func TestInCommitTimestamps(t *testing.T) {
	ctx := t.Context()
	l := lake.NewMemory()
	w := logWriter{t, l, "ict"}
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	future := now.Add(time.Hour).UnixMilli() // another writer's clock runs ahead
	w.commit(0, obj{"commitInfo": obj{"inCommitTimestamp": future, "operation": "CREATE TABLE"}},
		protocol(1, 7, nil, []string{"inCommitTimestamp", "appendOnly", "invariants"}),
		metadata(confSchema, []string{"part"}, map[string]string{"delta.enableInCommitTimestamps": "true",
			"delta.inCommitTimestampEnablementVersion": "0", "delta.inCommitTimestampEnablementTimestamp": fmt.Sprint(future)}))
	ictOf := func(v int64) int64 {
		t.Helper()
		data, err := l.Get(ctx, delta.CommitName("ict", v))
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(string(data), "\n")
		var a struct {
			CommitInfo *struct {
				InCommitTimestamp int64 `json:"inCommitTimestamp"`
			} `json:"commitInfo"`
		}
		if err := json.Unmarshal([]byte(first), &a); err != nil || a.CommitInfo == nil {
			t.Fatalf("commit %d: first action %s is not commitInfo (%v)", v, first, err)
		}
		return a.CommitInfo.InCommitTimestamp
	}
	opts := delta.Options{PartitionColumns: []string{"part"}, Now: func() time.Time { return now }}
	tb, err := delta.Open[confRow](ctx, l, "ict", opts)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		add, err := delta.WriteFile(ctx, tb, []confRow{{ID: 1, Part: "p"}}, map[string]string{"part": "p"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
	}
	if got := []int64{ictOf(1), ictOf(2)}; got[0] != future+1 || got[1] != future+2 {
		t.Errorf("inCommitTimestamps %v, want %d and %d (after the previous commit's)", got, future+1, future+2)
	}
	if err := tb.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	later := now.Add(30 * time.Minute) // still behind the other writer's clock
	opts.Now = func() time.Time { return later }
	tb2, err := delta.Open[confRow](ctx, l, "ict", opts)
	if err != nil {
		t.Fatal(err)
	}
	add, err := delta.WriteFile(ctx, tb2, []confRow{{ID: 2, Part: "p"}}, map[string]string{"part": "p"})
	if err != nil {
		t.Fatal(err)
	}
	v, err := tb2.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE")
	if err != nil {
		t.Fatal(err)
	}
	if got := ictOf(v); got != future+3 {
		t.Errorf("inCommitTimestamp %d from a Table started at a checkpoint, want %d (read from the previous commit)", got, future+3)
	}
}
