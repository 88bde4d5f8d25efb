package delta_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

func TestCompact(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	tb, err := delta.Open[schema.GoldRow](ctx, l, schema.Gold, delta.Options{PartitionColumns: []string{"device"}})
	if err != nil {
		t.Fatal(err)
	}
	var want []schema.GoldRow
	for i := range 30 {
		dev := fmt.Sprintf("d%d", i%3)
		rows := []schema.GoldRow{{Device: dev, WindowStart: int64(i), N: 8, Windows: 1, TempC: float64(i)}}
		add, err := delta.WriteFile(ctx, tb, rows, map[string]string{"device": dev})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
		want = append(want, rows...)
	}
	before := tb.Snapshot().Version
	removed, err := delta.Compact[schema.GoldRow](ctx, tb, delta.CompactOptions{MinFiles: 5})
	if err != nil {
		t.Fatal(err)
	}
	if removed != 30 || tb.Snapshot().NumFiles() != 3 {
		t.Fatalf("removed %d, %d files left", removed, tb.Snapshot().NumFiles())
	}
	// The OPTIMIZE commit: adds and removes, all dataChange=false.
	data, err := l.Get(ctx, delta.CommitName(schema.Gold, before+1))
	if err != nil {
		t.Fatal(err)
	}
	var adds, removes int
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var a delta.Action
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatal(err)
		}
		switch {
		case a.Add != nil:
			adds++
			if a.Add.DataChange {
				t.Error("compaction add with dataChange=true")
			}
		case a.Remove != nil:
			removes++
			if a.Remove.DataChange || a.Remove.DeletionTimestamp == 0 || !strings.HasPrefix(a.Remove.Path, "device=") {
				t.Errorf("remove %+v", a.Remove)
			}
		case a.CommitInfo != nil:
			if a.CommitInfo["operation"] != "OPTIMIZE" {
				t.Errorf("commitInfo %v", a.CommitInfo)
			}
		}
	}
	if adds != 3 || removes != 30 {
		t.Fatalf("%d adds, %d removes", adds, removes)
	}
	got, err := delta.ReadTable[schema.GoldRow](ctx, l, schema.Gold, nil)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b schema.GoldRow) int { return int(a.WindowStart - b.WindowStart) })
	if !slices.Equal(got, want) {
		t.Fatalf("rows changed by compaction")
	}
	checkLog(t, l, schema.Gold)
	// A checkpoint after compaction keeps the tombstones and only live adds.
	if err := tb.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	snap, err := delta.Load(ctx, l, schema.Gold)
	if err != nil {
		t.Fatal(err)
	}
	if snap.NumFiles() != 3 || len(snap.Tombstones()) != 30 {
		t.Fatalf("after checkpoint: %d files, %d tombstones", snap.NumFiles(), len(snap.Tombstones()))
	}
}

// FuzzDecodeCommit: commits come from the lake (untrusted): parsing and
// applying any bytes must fail cleanly, never panic.
func FuzzLoadCommit(f *testing.F) {
	f.Add([]byte(`{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}` + "\n" + `{"metaData":{"id":"x","format":{"provider":"parquet","options":{}},"schemaString":"{\"type\":\"struct\",\"fields\":[]}","partitionColumns":[],"configuration":{}}}`))
	f.Add([]byte(`{"add":{"path":"a.parquet","partitionValues":{},"size":1,"modificationTime":1,"dataChange":true,"stats":"{\"numRecords\":1}"}}`))
	f.Add([]byte(`{"remove":{"path":"a.parquet","deletionTimestamp":1,"dataChange":true}}`))
	f.Add([]byte(`{"txn":{"appId":"a","version":3}}`))
	f.Add([]byte("{\"add\":{\"path\":\"../../etc/passwd\"}}"))
	f.Add([]byte("not json\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := t.Context()
		l := lake.NewMemory()
		if err := l.Put(ctx, delta.CommitName("t", 0), data); err != nil {
			t.Fatal(err)
		}
		snap, err := delta.Load(ctx, l, "t")
		if err != nil {
			return
		}
		for _, f := range snap.Files() {
			_, _ = f.ParsedStats()
		}
		// Reading must refuse paths that leave the table.
		_, _ = delta.ReadTable[schema.SilverRow](ctx, l, "t", nil)
	})
}

// TestCheckpointSchemaFollowsSpec checks a written checkpoint's Parquet
// schema against the protocol's "Checkpoint Schema" (the fields pilake uses).
func TestCheckpointSchemaFollowsSpec(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	tb, err := delta.Open[schema.SilverRow](ctx, l, "t", delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	add, err := delta.WriteFile(ctx, tb, []schema.SilverRow{{Device: "a", Count: 1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}, {Txn: &delta.Txn{AppID: "x", Version: 1}}}, "WRITE"); err != nil {
		t.Fatal(err)
	}
	if err := tb.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := l.Get(ctx, delta.CheckpointName("t", 1))
	if err != nil {
		t.Fatal(err)
	}
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	leaf := map[string]parquet.Kind{
		"txn.appId": parquet.ByteArray, "txn.version": parquet.Int64,
		"add.path": parquet.ByteArray, "add.size": parquet.Int64, "add.modificationTime": parquet.Int64,
		"add.dataChange": parquet.Boolean, "add.stats": parquet.ByteArray,
		"add.partitionValues.key_value.key": parquet.ByteArray, "add.partitionValues.key_value.value": parquet.ByteArray,
		"remove.path": parquet.ByteArray, "remove.deletionTimestamp": parquet.Int64, "remove.dataChange": parquet.Boolean,
		"metaData.id": parquet.ByteArray, "metaData.format.provider": parquet.ByteArray, "metaData.schemaString": parquet.ByteArray,
		"metaData.partitionColumns.list.element": parquet.ByteArray, "metaData.createdTime": parquet.Int64,
		"metaData.configuration.key_value.key": parquet.ByteArray,
		"protocol.minReaderVersion":            parquet.Int32, "protocol.minWriterVersion": parquet.Int32,
	}
	for p, kind := range leaf {
		col, ok := f.Schema().Lookup(strings.Split(p, ".")...)
		if !ok {
			t.Errorf("checkpoint lacks %s", p)
			continue
		}
		if col.Node.Type().Kind() != kind {
			t.Errorf("checkpoint %s is %v, want %v", p, col.Node.Type().Kind(), kind)
		}
	}
	for _, top := range []string{"txn", "add", "remove", "metaData", "protocol"} {
		col, ok := f.Schema().Lookup(top)
		if ok && !col.Node.Optional() {
			t.Errorf("%s must be an optional struct (one action per row)", top)
		}
	}
	// Map and list columns carry their logical types.
	for p, want := range map[string]string{"add.partitionValues": "MAP", "metaData.configuration": "MAP", "metaData.partitionColumns": "LIST"} {
		var node parquet.Node = f.Schema()
		for _, name := range strings.Split(p, ".") {
			var found parquet.Node
			for _, fld := range node.Fields() {
				if fld.Name() == name {
					found = fld
				}
			}
			if found == nil {
				t.Fatalf("%s: no %s", p, name)
			}
			node = found
		}
		if lt := node.Type().LogicalType(); lt == nil || lt.Value == nil || !strings.EqualFold(lt.Value.String(), want) {
			t.Errorf("%s: logical type %v, want %s", p, lt, want)
		}
	}
}

func TestVacuum(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	now := time.Now()
	clock := func() time.Time { return now }
	tb, err := delta.Open[schema.SilverRow](ctx, l, "v", delta.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		add, err := delta.WriteFile(ctx, tb, []schema.SilverRow{{Device: "a", WindowStart: int64(i), Count: 1}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
	}
	// An orphan: written, never committed.
	if _, err := delta.WriteFile(ctx, tb, []schema.SilverRow{{Device: "orphan"}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := delta.Compact[schema.SilverRow](ctx, tb, delta.CompactOptions{MinFiles: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Vacuum(ctx, time.Minute); err == nil {
		t.Fatal("a retention under an hour was accepted")
	}
	if n, err := tb.Vacuum(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("fresh files vacuumed: %d, %v", n, err)
	}
	now = now.Add(2 * time.Hour)
	n, err := tb.Vacuum(ctx, time.Hour)
	if err != nil || n != 11 {
		t.Fatalf("vacuumed %d files (%v), want 10 compacted + 1 orphan", n, err)
	}
	rows, err := delta.ReadTable[schema.SilverRow](ctx, l, "v", nil)
	if err != nil || len(rows) != 10 {
		t.Fatalf("after vacuum: %d rows, %v", len(rows), err)
	}
	if _, err := l.Get(ctx, delta.CommitName("v", 0)); err != nil {
		t.Fatal("vacuum touched the log")
	}
}

func TestCompactBoundedByRows(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	tb, err := delta.Open[schema.SilverRow](ctx, l, "c", delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		rows := make([]schema.SilverRow, 10)
		for j := range rows {
			rows[j] = schema.SilverRow{Device: "a", WindowStart: int64(i*10 + j), Count: 1}
		}
		add, err := delta.WriteFile(ctx, tb, rows, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
	}
	// Files of 10 rows, targets of 40 rows, at least 3 files a bin: 5 bins
	// of 4. At most 80 rows a call: 2 bins now.
	n, err := delta.Compact[schema.SilverRow](ctx, tb, delta.CompactOptions{SmallFileRows: 11, TargetRows: 40, MinFiles: 3, MaxRows: 80})
	if err != nil || n != 8 || tb.Snapshot().NumFiles() != 14 {
		t.Fatalf("removed %d (%v), %d files left, want 8 and 14", n, err, tb.Snapshot().NumFiles())
	}
	// The rest (12 files, within the default 4 targets' worth of rows).
	n, err = delta.Compact[schema.SilverRow](ctx, tb, delta.CompactOptions{SmallFileRows: 11, TargetRows: 40, MinFiles: 3})
	if err != nil || n != 12 || tb.Snapshot().NumFiles() != 5 {
		t.Fatalf("removed %d (%v), %d files left, want 12 and 5", n, err, tb.Snapshot().NumFiles())
	}
	// The 40-row files are not small any more.
	if n, err := delta.Compact[schema.SilverRow](ctx, tb, delta.CompactOptions{SmallFileRows: 11, TargetRows: 40, MinFiles: 3}); err != nil || n != 0 {
		t.Fatalf("second compaction removed %d (%v)", n, err)
	}
	rows, err := delta.ReadTable[schema.SilverRow](ctx, l, "c", nil)
	if err != nil || len(rows) != 200 {
		t.Fatalf("%d rows, %v", len(rows), err)
	}
}

// FuzzReadParquet: checkpoints and data files come from the lake too; a
// corrupt one must give an error, never a panic (parquet-go can panic on
// malformed input, so the readers recover).
func FuzzReadParquet(f *testing.F) {
	ctx := context.Background()
	seed := lake.NewMemory()
	tb, err := delta.Open[schema.SilverRow](ctx, seed, "t", delta.Options{})
	if err != nil {
		f.Fatal(err)
	}
	add, err := delta.WriteFile(ctx, tb, []schema.SilverRow{{Device: "a", Count: 2}, {Device: "b", Count: 3}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
		f.Fatal(err)
	}
	if err := tb.Checkpoint(ctx); err != nil {
		f.Fatal(err)
	}
	cp, _ := seed.Get(ctx, delta.CheckpointName("t", 1))
	data, _ := seed.Get(ctx, "t/"+add.Path)
	f.Add(cp, data)
	f.Add(cp[:len(cp)/2], data[:len(data)-9])
	f.Fuzz(func(t *testing.T, cpData, fileData []byte) {
		l := lake.NewMemory()
		objs, _ := seed.List(ctx, "")
		for _, o := range objs {
			b, _ := seed.Get(ctx, o.Name)
			l.Put(ctx, o.Name, b)
		}
		l.Put(ctx, delta.CheckpointName("t", 1), cpData)
		l.Put(ctx, "t/"+add.Path, fileData)
		_, _ = delta.ReadTable[schema.SilverRow](ctx, l, "t", nil)
		_, _ = delta.FileStats(fileData, tb.Schema())
	})
}

func TestCleanupLog(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	now := time.Now()
	tb, err := delta.Open[schema.SilverRow](ctx, l, "g", delta.Options{CheckpointInterval: 10, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 25 {
		add, err := delta.WriteFile(ctx, tb, []schema.SilverRow{{Device: "a", WindowStart: int64(i)}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := tb.CleanupLog(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("fresh log cleaned: %d, %v", n, err)
	}
	now = now.Add(2 * time.Hour)
	// Checkpoints at 10 and 20: commits 0..19, their version checksum
	// files and checkpoint 10 go; commit 20 stays with its checkpoint
	// (PROTOCOL.md, Metadata Cleanup: the cutoff checkpoint's own commit is
	// kept for its commitInfo), and so does its .crc.
	n, err := tb.CleanupLog(ctx, time.Hour)
	if err != nil || n != 41 {
		t.Fatalf("cleaned %d (%v), want 41", n, err)
	}
	if _, err := l.Get(ctx, delta.CommitName("g", 20)); err != nil {
		t.Fatalf("the cutoff checkpoint's commit was deleted: %v", err)
	}
	if _, err := l.Get(ctx, delta.ChecksumName("g", 20)); err != nil {
		t.Fatalf("the cutoff checkpoint's commit's .crc was deleted: %v", err)
	}
	for _, load := range []func() (*delta.Snapshot, error){
		func() (*delta.Snapshot, error) { return delta.Load(ctx, l, "g") },
		func() (*delta.Snapshot, error) { // without _last_checkpoint: by listing
			_ = l.Delete(ctx, delta.LastCheckpointName("g"))
			return delta.Load(ctx, l, "g")
		},
	} {
		snap, err := load()
		if err != nil || snap.Version != 25 || snap.NumFiles() != 25 {
			t.Fatalf("after cleanup: %v", err)
		}
	}
}

// TestCompactByTime: files of closed hours become hour files, closed days
// that fit in a target become one day file, recent buckets are left alone,
// and a day file Compact wrote is never rewritten.
func TestCompactByTime(t *testing.T) {
	ctx := t.Context()
	l := lake.NewMemory()
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	now := start
	tb, err := delta.Open[schema.GoldRow](ctx, l, schema.Gold, delta.Options{PartitionColumns: []string{"device"}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	dayFiles := map[string]bool{}
	rowsIn := 0
	// Two days and 5 hours; 3 files an hour (20 min each) for each of 2 devices.
	for step := range (2*24 + 5) * 3 {
		ts := start.Add(time.Duration(step) * 20 * time.Minute)
		for d := range 2 {
			dev := fmt.Sprintf("d%d", d)
			rows := []schema.GoldRow{{Device: dev, WindowStart: ts.UnixMicro(), N: 8, Windows: 1}}
			add, err := delta.WriteFile(ctx, tb, rows, map[string]string{"device": dev})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
				t.Fatal(err)
			}
			rowsIn++
		}
		now = ts.Add(20 * time.Minute)
		if step%2 == 0 {
			// A small row budget: hours queue up, oldest first.
			if _, err := delta.Compact[schema.GoldRow](ctx, tb, delta.CompactOptions{MaxRows: 5}); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range tb.Snapshot().Files() {
			if f.Tags[delta.TagCompaction] == delta.TierDay {
				dayFiles[f.Path] = true
			}
		}
	}
	for range 10 { // catch up what the row budget left
		if _, err := delta.Compact[schema.GoldRow](ctx, tb, delta.CompactOptions{MaxRows: 5}); err != nil {
			t.Fatal(err)
		}
	}
	// It is 05:00 of the third day: per device, 2 day files, hours 0-3 of
	// today as hour files, hour 4 (open until 05:10) as it was written.
	tiers := map[string]int{}
	live := map[string]bool{}
	for _, f := range tb.Snapshot().Files() {
		tiers[f.Tags[delta.TagCompaction]]++
		live[f.Path] = true
	}
	if tiers[delta.TierDay] != 4 || tiers[delta.TierHour] != 8 || tiers[""] != 6 {
		t.Fatalf("files by tier %v, want 4 day, 8 hour, 6 untiered", tiers)
	}
	for p := range dayFiles {
		if !live[p] {
			t.Fatalf("day file %s was rewritten", p)
		}
	}
	got, err := delta.ReadTable[schema.GoldRow](ctx, l, schema.Gold, nil)
	if err != nil || len(got) != rowsIn {
		t.Fatalf("%d rows, %v; want %d", len(got), err, rowsIn)
	}
	checkLog(t, l, schema.Gold)
}
