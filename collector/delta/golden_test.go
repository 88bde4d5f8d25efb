package delta_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
)

// TestLoadSparkStyleLog replays a log shaped like Spark's Delta writer's
// (testdata/spark_style: Spark-style commitInfo, partitioned add actions
// with tags and a URL-escaped path, an OPTIMIZE with remove actions, a
// streaming txn): pilake must read tables other writers made.
func TestLoadSparkStyleLog(t *testing.T) {
	dir := t.TempDir()
	src := "testdata/spark_style/_delta_log"
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "t", "_delta_log"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "t", "_delta_log", e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, err := lake.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := delta.Load(t.Context(), l, "t")
	if err != nil {
		t.Fatal(err)
	}
	if snap.Version != 2 || snap.NumFiles() != 2 || len(snap.Tombstones()) != 1 {
		t.Fatalf("version %d, %d files, %d tombstones", snap.Version, snap.NumFiles(), len(snap.Tombstones()))
	}
	if v, ok := snap.TxnVersion("f00d"); !ok || v != 7 {
		t.Fatalf("txn %d %v", v, ok)
	}
	files := snap.Files()
	if files[0].PartitionValues["device"] != "dev 2" || files[1].DataChange {
		t.Fatalf("files %+v", files)
	}
	st, err := files[0].ParsedStats()
	if err != nil || st.NumRecords != 1 {
		t.Fatalf("stats %+v %v", st, err)
	}
	sc, err := snap.Schema()
	if err != nil || len(sc.Fields) != 4 || snap.Metadata.PartitionColumns[0] != "device" {
		t.Fatalf("schema %+v %v", sc, err)
	}
	// A pilake writer can append to it: same schema types, same partitioning.
	type row struct {
		Device      string  `parquet:"device"`
		WindowStart int64   `parquet:"window_start,timestamp(microsecond)"`
		N           int32   `parquet:"n"`
		TempC       float64 `parquet:"temp_c"`
	}
	tb, err := delta.Open[row](t.Context(), l, "t", delta.Options{PartitionColumns: []string{"device"}})
	if err != nil {
		t.Fatal(err)
	}
	add, err := delta.WriteFile(t.Context(), tb, []row{{Device: "dev-3", N: 8, TempC: 1}}, map[string]string{"device": "dev-3"})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := tb.Commit(t.Context(), []delta.Action{{Add: &add}}, "WRITE"); err != nil || v != 3 {
		t.Fatalf("commit %d %v", v, err)
	}
}
