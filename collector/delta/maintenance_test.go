package delta_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// age sets the modification time of the lake object name to t.
func age(tb testing.TB, l *lake.Local, name string, t time.Time) {
	tb.Helper()
	if err := os.Chtimes(filepath.Join(l.Root(), filepath.FromSlash(name)), t, t); err != nil {
		tb.Fatal(err)
	}
}

func exists(tb testing.TB, l *lake.Local, name string) bool {
	tb.Helper()
	_, err := os.Stat(filepath.Join(l.Root(), filepath.FromSlash(name)))
	return err == nil
}

// TestVacuumByDeletionTimestamp: a file written 8 days ago and compacted
// away a moment ago stays through Vacuum(7 days) (readers of the version
// before the compaction still read it) and goes once its remove is older
// than the retention. An orphan (never committed) goes by its age.
func TestVacuumByDeletionTimestamp(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	now := time.Now()
	tb, err := delta.Open[schema.SilverRow](ctx, l, "v", delta.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	var old []string
	for i := range 3 {
		add, err := delta.WriteFile(ctx, tb, []schema.SilverRow{{Device: "a", WindowStart: int64(i), Count: 1}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
		old = append(old, "v/"+add.Path)
		age(t, l, "v/"+add.Path, now.Add(-8*24*time.Hour))
	}
	orphan, err := delta.WriteFile(ctx, tb, []schema.SilverRow{{Device: "orphan"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	age(t, l, "v/"+orphan.Path, now.Add(-8*24*time.Hour))
	if n, err := delta.Compact[schema.SilverRow](ctx, tb, delta.CompactOptions{MinFiles: 2}); err != nil || n != 3 {
		t.Fatalf("Compact = %d, %v", n, err)
	}
	before := tb.Snapshot().Version - 1
	// A checkpoint: the writer's Table no longer holds the tombstones in
	// memory; Vacuum must still see them.
	if err := tb.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}

	n, err := tb.Vacuum(ctx, 7*24*time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("Vacuum(7d) right after compaction deleted %d (%v), want the orphan only", n, err)
	}
	for _, p := range old {
		if !exists(t, l, p) {
			t.Fatalf("%s, removed a moment ago, was deleted", p)
		}
	}
	// The version before the compaction is still readable in full.
	snap, err := delta.LoadVersion(ctx, l, "v", before)
	if err != nil {
		t.Fatal(err)
	}
	if rows, err := delta.ReadFiles[schema.SilverRow](ctx, l, "v", snap.Files(), nil); err != nil || len(rows) != 3 {
		t.Fatalf("version %d after vacuum: %d rows, %v", before, len(rows), err)
	}

	now = now.Add(7*24*time.Hour + time.Minute)
	if n, err := tb.Vacuum(ctx, 7*24*time.Hour); err != nil || n != 3 {
		t.Fatalf("Vacuum(7d) 7 days after the compaction deleted %d (%v), want 3", n, err)
	}
	if rows, err := delta.ReadTable[schema.SilverRow](ctx, l, "v", nil); err != nil || len(rows) != 3 {
		t.Fatalf("after vacuum: %d rows, %v", len(rows), err)
	}
}

// TestEscapedPartitionDirs: partition values that need escaping go to
// Hive-escaped directories, add.path is their URI encoding, the rows read
// back with their partition values, and Vacuum keeps the live files. A
// Spark-written add of `device=a%20b/…` (directory "device=a b") is kept
// too.
func TestEscapedPartitionDirs(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	now := time.Now()
	tb, err := delta.Open[schema.GoldRow](ctx, l, "g", delta.Options{PartitionColumns: []string{"device"}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	devices := map[string]string{ // value → directory, as Spark names it
		"a b":     "device=a b",
		"a:b/c%d": "device=a%3Ab%2Fc%25d",
		"é=x?":    "device=é%3Dx%3F",
		"plain":   "device=plain",
	}
	var names []string
	for dev, dir := range devices {
		add, err := delta.WriteFile(ctx, tb, []schema.GoldRow{{Device: dev, WindowStart: 1, N: 8}}, map[string]string{"device": dev})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(add.Path, delta.EncodePath(dir)+"/") {
			t.Errorf("%q: add.path %q, want it under %q", dev, add.Path, delta.EncodePath(dir))
		}
		name := "g/" + dir + "/" + add.Path[strings.LastIndex(add.Path, "/")+1:]
		if !exists(t, l, name) {
			t.Errorf("%q: no file %s", dev, name)
		}
		names = append(names, name)
		if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
	}
	// As Spark writes it: the directory "device=a b", add.path URI-encoded.
	data, st, err := delta.EncodeParquet([]schema.GoldRow{{Device: "a b", WindowStart: 2, N: 8}}, []string{"device"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Put(ctx, "g/device=a b/part-00000-spark.c000.snappy.parquet", data); err != nil {
		t.Fatal(err)
	}
	stats, _ := json.Marshal(st)
	spark := delta.AddFile{Path: "device=a%20b/part-00000-spark.c000.snappy.parquet", PartitionValues: map[string]string{"device": "a b"},
		Size: int64(len(data)), ModificationTime: now.UnixMilli(), DataChange: true, Stats: string(stats)}
	if _, err := tb.Commit(ctx, []delta.Action{{Add: &spark}}, "WRITE"); err != nil {
		t.Fatal(err)
	}
	names = append(names, "g/device=a b/part-00000-spark.c000.snappy.parquet")
	for _, n := range names {
		age(t, l, n, now.Add(-30*24*time.Hour))
	}
	now = now.Add(30 * 24 * time.Hour)
	if n, err := tb.Vacuum(ctx, 7*24*time.Hour); err != nil || n != 0 {
		t.Fatalf("Vacuum deleted %d live files (%v)", n, err)
	}
	rows, err := delta.ReadTable[schema.GoldRow](ctx, l, "g", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.Device)
	}
	slices.Sort(got)
	if want := []string{"a b", "a b", "a:b/c%d", "plain", "é=x?"}; !slices.Equal(got, want) {
		t.Errorf("devices read %q, want %q", got, want)
	}
	// A remove naming the Spark file as `file:`-less decoded-equal path
	// removes it: canonical paths.
	rm := delta.RemoveFile{Path: "device=a%20b/part-00000-spark.c000.snappy.parquet", DeletionTimestamp: now.UnixMilli(), DataChange: true}
	if _, err := tb.Commit(ctx, []delta.Action{{Remove: &rm}}, "DELETE"); err != nil {
		t.Fatal(err)
	}
	if n := tb.Snapshot().NumFiles(); n != 4 {
		t.Errorf("%d files after removing one of 5", n)
	}
}

// TestCanonicalPaths: an add and a remove naming the same file in different
// spellings (file:/x, file:///x, /x; %-encoded or not) name one file.
func TestCanonicalPaths(t *testing.T) {
	for _, c := range [][2]string{
		{"file:/data/t/a%20b.parquet", "/data/t/a b.parquet"},
		{"file:///data/t/a.parquet", "/data/t/a.parquet"},
		{"/data/t/a.parquet", "/data/t/a.parquet"},
		{"device=a%253Ab/x.parquet", "device=a%3Ab/x.parquet"},
		{"abfss://c@acct.dfs.core.windows.net/t/x%20y.parquet", "abfss://c@acct.dfs.core.windows.net/t/x y.parquet"},
		{"part-0.parquet", "part-0.parquet"},
	} {
		got, err := delta.CanonicalPath(c[0])
		if err != nil || got != c[1] {
			t.Errorf("CanonicalPath(%q) = %q, %v; want %q", c[0], got, err, c[1])
		}
	}
	if _, err := delta.CanonicalPath("a%zz.parquet"); !errors.Is(err, delta.ErrCorruptLog) {
		t.Errorf("bad escape: %v", err)
	}
}

// TestRemoveCarriesPartitionValues: compaction's removes say
// extendedFileMetadata and so carry partitionValues (also {} for an
// unpartitioned table) and size; commitInfo has operationParameters.
func TestRemoveCarriesPartitionValues(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	tb, err := delta.Open[schema.SilverRow](ctx, l, "r", delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		add, err := delta.WriteFile(ctx, tb, []schema.SilverRow{{Device: "a", WindowStart: int64(i)}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := delta.Compact[schema.SilverRow](ctx, tb, delta.CompactOptions{MinFiles: 2}); err != nil {
		t.Fatal(err)
	}
	data, err := l.Get(ctx, delta.CommitName("r", tb.Snapshot().Version))
	if err != nil {
		t.Fatal(err)
	}
	removes := 0
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var a map[string]map[string]any
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatal(err)
		}
		if ci, ok := a["commitInfo"]; ok {
			if _, ok := ci["operationParameters"].(map[string]any); !ok {
				t.Errorf("commitInfo without operationParameters: %s", line)
			}
		}
		if rm, ok := a["remove"]; ok {
			removes++
			if rm["extendedFileMetadata"] != true {
				t.Errorf("remove without extendedFileMetadata: %s", line)
			}
			if _, ok := rm["partitionValues"].(map[string]any); !ok {
				t.Errorf("remove claims extendedFileMetadata without partitionValues: %s", line)
			}
			if _, ok := rm["size"].(float64); !ok {
				t.Errorf("remove claims extendedFileMetadata without size: %s", line)
			}
		}
	}
	if removes != 2 {
		t.Errorf("%d removes, want 2", removes)
	}
}

// TestCleanupLogKeepsRetention: commits 0..25 with checkpoints at 10 and
// 20; commits up to 15 are older than the retention. The cutoff commit is
// 15, the cutoff checkpoint 10 (the newest not newer than 15, not the
// newest, 20): only commits 0..9 go; checkpoint 10 and its commit stay, and
// every version from 10 on loads. Files outside the log's top level, .crc
// files and a stray _delta_log/.tmp/x.json are handled by the rules.
func TestCleanupLogKeepsRetention(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	now := time.Now()
	tb, err := delta.Open[schema.SilverRow](ctx, l, "c", delta.Options{CheckpointInterval: 10, Now: func() time.Time { return now }})
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
	if err := l.Put(ctx, "c/_delta_log/.tmp/00000000000000000001.json", []byte("not a commit")); err != nil {
		t.Fatal(err)
	}
	// A .crc that is not pilake's (pilake wrote one for version 3 too):
	// cleanup deletes it with its commit whatever it holds.
	if err := l.Put(ctx, "c/_delta_log/00000000000000000003.crc", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	for v := int64(0); v <= 25; v++ {
		at := now.Add(-time.Duration(40-v) * 24 * time.Hour) // commit 15 at -25 days, 16 at -24
		if v > 15 {
			at = now.Add(-time.Hour)
		}
		age(t, l, delta.CommitName("c", v), at)
	}
	age(t, l, "c/_delta_log/.tmp/00000000000000000001.json", now.Add(-90*24*time.Hour))
	age(t, l, "c/_delta_log/00000000000000000003.crc", now.Add(-90*24*time.Hour))

	n, err := tb.CleanupLog(ctx, 24*24*time.Hour+12*time.Hour) // cutoff between commits 15 and 16
	if err != nil {
		t.Fatal(err)
	}
	if n != 20 { // commits 0..9 and their .crc files
		t.Errorf("CleanupLog deleted %d, want 20", n)
	}
	for v := int64(10); v <= 25; v++ {
		if !exists(t, l, delta.CommitName("c", v)) {
			t.Errorf("commit %d deleted", v)
		}
	}
	for _, v := range []int64{10, 20} {
		if !exists(t, l, delta.CheckpointName("c", v)) {
			t.Errorf("checkpoint %d deleted", v)
		}
	}
	if !exists(t, l, "c/_delta_log/.tmp/00000000000000000001.json") {
		t.Error("a file below _delta_log/.tmp was deleted")
	}
	for v := int64(15); v <= 25; v++ {
		snap, err := delta.LoadVersion(ctx, l, "c", v)
		if err != nil || snap.NumFiles() != int(v) {
			t.Errorf("version %d after cleanup: %v", v, err)
		}
	}
	if _, err := delta.LoadVersion(ctx, l, "c", 5); err == nil {
		t.Error("version 5 loaded although its commits are gone")
	}
	// Loading by listing ignores the stray .tmp file.
	if err := l.Delete(ctx, delta.LastCheckpointName("c")); err != nil {
		t.Fatal(err)
	}
	if snap, err := delta.Load(ctx, l, "c"); err != nil || snap.Version != 25 {
		t.Fatalf("Load by listing: %v", err)
	}

	// No checkpoint at or before the cutoff commit: nothing goes.
	l2 := newLake(t)
	tb2, err := delta.Open[schema.SilverRow](ctx, l2, "d", delta.Options{CheckpointInterval: 10, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		add, err := delta.WriteFile(ctx, tb2, []schema.SilverRow{{Device: "a", WindowStart: int64(i)}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb2.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
	}
	for v := int64(0); v <= 12; v++ {
		at := now.Add(-40 * 24 * time.Hour)
		if v >= 9 {
			at = now
		}
		age(t, l2, delta.CommitName("d", v), at)
	}
	if n, err := tb2.CleanupLog(ctx, 30*24*time.Hour); err != nil || n != 0 {
		t.Errorf("CleanupLog with the only checkpoint (10) after the cutoff commit (8) deleted %d, %v", n, err)
	}
}
