package delta

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"strings"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2/roaring64"
	"github.com/parquet-go/parquet-go"

	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// FuzzDeletionVector: a deletion vector from the log or a DV file is
// untrusted; decoding it must fail cleanly, never panic, and a bitmap it
// accepts must re-encode to the same rows.
func FuzzDeletionVector(f *testing.F) {
	var portable bytes.Buffer
	_ = binary.Write(&portable, binary.LittleEndian, uint32(dvMagic))
	_, _ = roaring64.BitmapOf(3, 4, 7, 11, 18, 29, 1<<33).WriteTo(&portable)
	f.Add(portable.Bytes())
	if b, err := decodeZ85("wi5b=000010000siXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L"); err == nil {
		f.Add(b)
	}
	f.Add([]byte{0xd0, 0xd3, 0x39, 0x64, 1, 0, 0, 0, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		bm, err := decodeDV(b)
		if err != nil {
			return
		}
		_ = bm.GetCardinality()
		_, _ = decodeZ85(string(b))
		_, _ = dvRelPath(string(b))
	})
}

// FuzzConstraint: CHECK constraints and invariants come from another
// writer's metadata; parsing and evaluating them must never panic.
func FuzzConstraint(f *testing.F) {
	for _, s := range []string{"temp_c > -100 AND temp_c < 200", "`x` BETWEEN 1 AND 3 OR NOT (y IS NULL)", "ts >= TIMESTAMP '2026-01-01 00:00:00'", "((a", "1 = x", "a <> 'b'"} {
		f.Add(s)
	}
	schema, _ := ParseSchema(`{"type":"struct","fields":[{"name":"temp_c","type":"double","nullable":true,"metadata":{}},{"name":"ts","type":"timestamp","nullable":true,"metadata":{}}]}`)
	st := Stats{NumRecords: 3, MinValues: map[string]any{"temp_c": 1.0, "ts": "2026-01-01T00:00:00.000Z"}, MaxValues: map[string]any{"temp_c": 9.0, "ts": "2026-01-02T00:00:00.000Z"}, NullCount: map[string]int64{"temp_c": 0, "ts": 0}}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parseConstraint(s)
		if err != nil {
			return
		}
		_ = e.eval(statsEnv{st: st, schema: schema})
	})
}

// FuzzCheckpointFooter: a checkpoint's footer is rewritten to find MAP
// groups by structure; a corrupt file must be an error, never a panic.
func FuzzCheckpointFooter(f *testing.F) {
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[cpRow](&buf)
	_, _ = w.Write([]cpRow{{Add: &cpAdd{Path: "a", PartitionValues: map[string]string{"k": "v"}}}})
	_ = w.Close()
	f.Add(buf.Bytes())
	if b, err := renameMapGroups(buf.Bytes(), "entries"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = eachParquetAction(context.Background(), b, func(Action) error { return nil })
	})
}

// FuzzCheckpointV2: a V2 checkpoint's top-level file (checkpointMetadata,
// sidecar actions) and its sidecars come from the lake; reading them, as a
// reader and as a writer's lean snapshot that then checkpoints again, must
// fail cleanly or give a snapshot, never panic.
func FuzzCheckpointV2(f *testing.F) {
	var side bytes.Buffer
	w := parquet.NewGenericWriter[cpSidecarRow](&side)
	_, _ = w.Write([]cpSidecarRow{{Add: &cpAdd{Path: "a.parquet", PartitionValues: map[string]string{}, Size: 1}},
		{Remove: &cpRemove{Path: "b.parquet"}}})
	_ = w.Close()
	top := `{"checkpointMetadata":{"version":3,"tags":{"sidecarNumActions":"2"}}}
{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["v2Checkpoint"],"writerFeatures":["v2Checkpoint"]}}
{"metaData":{"id":"x","format":{"provider":"parquet"},"schemaString":"{\"type\":\"struct\",\"fields\":[]}","partitionColumns":[],"configuration":{"delta.checkpointPolicy":"v2"}}}
{"sidecar":{"path":"s.parquet","sizeInBytes":1,"modificationTime":1,"tags":{"pilake.group":"2026-01-01"}}}
`
	f.Add([]byte(top), side.Bytes())
	f.Add([]byte(strings.Replace(top, `"version":3`, `"version":4`, 1)), side.Bytes())
	f.Add([]byte(strings.Replace(top, `s.parquet`, `../../x.parquet`, 1)), side.Bytes())
	f.Fuzz(func(t *testing.T, top, side []byte) {
		ctx := context.Background()
		l := lake.NewMemory()
		_ = l.Put(ctx, "t/_delta_log/00000000000000000003.checkpoint.0f6a2b6e-0000-4000-8000-000000000000.json", top)
		_ = l.Put(ctx, "t/_delta_log/_sidecars/s.parquet", side)
		for _, lean := range []bool{false, true} {
			s := newSnapshot()
			s.setLean(lean)
			if err := s.readCheckpoint(ctx, l, "t", 3, []string{"t/_delta_log/00000000000000000003.checkpoint.0f6a2b6e-0000-4000-8000-000000000000.json"}); err != nil || s.complete() != nil {
				continue
			}
			_ = s.Files()
			if lean && s.v2Checkpoints() {
				tb := &Table{l: l, name: "t", snap: s, opts: Options{Now: func() time.Time { return time.Unix(0, 0) }}}
				_ = tb.Checkpoint(ctx)
			}
		}
	})
}

// TestKeyHashIsFNV1a: keyHash is hash/fnv's 64-bit FNV-1a.
func TestKeyHashIsFNV1a(t *testing.T) {
	for _, k := range []string{"", "a", "part-00000-3a948ae7.c000.zstd.parquet", "date=2026-03-10/x y.parquet\x00dv"} {
		h := fnv.New64a()
		h.Write([]byte(k))
		if got, want := keyHash(k), h.Sum64(); got != want {
			t.Fatalf("keyHash(%q) = %x, want %x", k, got, want)
		}
	}
}

// TestUnsealRefusesAChangedSidecar: a sealed sidecar that no longer holds
// what it held when sealed (replaced by garbage, or by a valid sidecar
// with a file fewer) is an error when the writer reads it back, never a
// silently smaller state.
func TestUnsealRefusesAChangedSidecar(t *testing.T) {
	ctx := t.Context()
	for _, bad := range []string{"garbage", "a file fewer"} {
		l := lake.NewMemory()
		now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
		tb, err := Open[schema.SilverRow](ctx, l, "t", Options{Now: func() time.Time { return now },
			CheckpointInterval: 1000, CheckpointPolicy: CheckpointV2})
		if err != nil {
			t.Fatal(err)
		}
		for range 12 {
			a, err := WriteFile(ctx, tb, []schema.SilverRow{{Device: "d", WindowStart: now.UnixMicro()}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tb.Commit(ctx, []Action{{Add: &a}}, "WRITE"); err != nil {
				t.Fatal(err)
			}
			if err := tb.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			now = now.Add(24 * time.Hour)
		}
		if len(tb.snap.sealed) == 0 {
			t.Fatal("nothing sealed after 12 days")
		}
		name := tb.snap.sealedNames()[0]
		data := []byte("not parquet")
		if bad == "a file fewer" {
			var adds []cpSidecarRow
			err := eachCheckpointAction(ctx, l, []string{name}, func(a Action) error {
				if a.Add != nil {
					adds = append(adds, cpSidecarRow{Add: addRow(*a.Add)})
				}
				return nil
			})
			if err != nil || len(adds) < 2 {
				t.Fatalf("sealed sidecar: %d adds, %v", len(adds), err)
			}
			other, _, err := tb.putSidecar(ctx, "x", now, func(w *parquet.GenericWriter[cpSidecarRow]) error {
				_, err := w.Write(adds[1:])
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if data, err = l.Get(ctx, other); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Put(ctx, name, data); err != nil {
			t.Fatal(err)
		}
		err = tb.snap.unsealAll(ctx, l)
		if err == nil {
			t.Fatalf("%s: reading back a changed sealed sidecar succeeded", bad)
		}
		if bad == "a file fewer" && !errors.Is(err, ErrCorruptLog) {
			t.Fatalf("%s: %v, want ErrCorruptLog", bad, err)
		}
	}
}
