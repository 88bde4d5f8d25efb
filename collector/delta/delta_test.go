package delta_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/scripts/testenv"
)

func newLake(t *testing.T) *lake.Local {
	t.Helper()
	l, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func bronzeRows(n int, device string, base int64) []schema.BronzeRow {
	rows := make([]schema.BronzeRow, n)
	for i := range rows {
		rows[i] = schema.BronzeRow{Device: device, TS: base + int64(i)*2500, TempC: 20 + float64(i)/100,
			PressurePa: schema.Float(101325), HumidityRH: schema.Float(40), Fresh: i%3 == 0, Boot: 7, Seq: int64(i/400 + 1), ReceivedAt: base + 1e6, Source: "mqtt"}
	}
	return rows
}

// checkLog validates every commit of table against the Delta protocol's rules
// for the actions pilake writes.
func checkLog(t *testing.T, l lake.Lake, table string) {
	t.Helper()
	ctx := context.Background()
	objs, err := l.List(ctx, delta.LogDir(table))
	if err != nil {
		t.Fatal(err)
	}
	var versions []int
	for _, o := range objs {
		base := path.Base(o.Name)
		if !strings.HasSuffix(base, ".json") {
			continue
		}
		var v int
		if _, err := fmt.Sscanf(base, "%020d.json", &v); err != nil || len(base) != 25 {
			t.Fatalf("commit file %q not named %%020d.json", base)
		}
		versions = append(versions, v)
		data, err := l.Get(ctx, o.Name)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		for i, line := range lines {
			var m map[string]json.RawMessage
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("%s line %d: not one JSON object: %v", base, i, err)
			}
			if len(m) != 1 {
				t.Fatalf("%s line %d: %d actions in one line", base, i, len(m))
			}
			for kind, raw := range m {
				var f map[string]any
				if err := json.Unmarshal(raw, &f); err != nil {
					t.Fatalf("%s: %s: %v", base, kind, err)
				}
				need := map[string][]string{
					"add":      {"path", "partitionValues", "size", "modificationTime", "dataChange", "stats"},
					"remove":   {"path", "deletionTimestamp", "dataChange"},
					"metaData": {"id", "format", "schemaString", "partitionColumns", "configuration"},
					"protocol": {"minReaderVersion", "minWriterVersion"},
					"txn":      {"appId", "version"},
				}[kind]
				if kind != "commitInfo" && need == nil {
					t.Fatalf("%s: unexpected action %q", base, kind)
				}
				for _, k := range need {
					if _, ok := f[k]; !ok {
						t.Errorf("%s: %s action lacks %s: %s", base, kind, k, raw)
					}
				}
				if kind == "add" {
					var st map[string]any
					if err := json.Unmarshal([]byte(f["stats"].(string)), &st); err != nil {
						t.Fatalf("%s: stats not JSON: %v", base, err)
					}
					for _, k := range []string{"numRecords", "minValues", "maxValues"} {
						if _, ok := st[k]; !ok {
							t.Errorf("%s: stats lack %s", base, k)
						}
					}
					if p := f["path"].(string); strings.HasPrefix(p, "/") || strings.HasPrefix(p, "_") {
						t.Errorf("%s: data file path %q", base, p)
					}
				}
				if kind == "metaData" {
					if _, err := delta.ParseSchema(f["schemaString"].(string)); err != nil {
						t.Errorf("%s: %v", base, err)
					}
				}
			}
		}
		if v == 0 {
			if !strings.Contains(string(data), `"protocol"`) || !strings.Contains(string(data), `"metaData"`) {
				t.Errorf("version 0 lacks protocol or metaData")
			}
		}
	}
	for i, v := range versions {
		if v != i {
			t.Fatalf("versions %v not contiguous from 0", versions)
		}
	}
}

func TestWriteReadBronze(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	tb, err := delta.Open[schema.BronzeRow](ctx, l, schema.Bronze, delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var want []schema.BronzeRow
	for i := range 3 {
		rows := bronzeRows(1000, fmt.Sprintf("dev-%d", i), 1_700_000_000_000_000+int64(i)*1e9)
		add, err := delta.WriteFile(ctx, tb, rows, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
		want = append(want, rows...)
	}
	got, err := delta.ReadTable[schema.BronzeRow](ctx, l, schema.Bronze, nil)
	if err != nil {
		t.Fatal(err)
	}
	sortBronze(got)
	sortBronze(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read %d rows, want %d (first %+v vs %+v)", len(got), len(want), got[0], want[0])
	}
	checkLog(t, l, schema.Bronze)
	snap, err := delta.Load(ctx, l, schema.Bronze)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range snap.Files() {
		st, err := f.ParsedStats()
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := st.MinValues["seq"].(json.Number).Int64(); n != 1 {
			t.Errorf("min seq %v", st.MinValues["seq"])
		}
		if st.NumRecords != 1000 {
			t.Errorf("numRecords %d", st.NumRecords)
		}
		mn, err := delta.ParseStatsTime(st.MinValues["ts"])
		if err != nil {
			t.Fatal(err)
		}
		if mn%1e9 != 0 {
			t.Errorf("min ts %v", st.MinValues["ts"])
		}
	}
}

func sortBronze(r []schema.BronzeRow) {
	slices.SortFunc(r, func(a, b schema.BronzeRow) int {
		if c := strings.Compare(a.Device, b.Device); c != 0 {
			return c
		}
		return int(a.TS - b.TS)
	})
}

func TestPartitionedGoldAndCheckpoint(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	tb, err := delta.Open[schema.GoldRow](ctx, l, schema.Gold, delta.Options{PartitionColumns: []string{"device"}})
	if err != nil {
		t.Fatal(err)
	}
	var want []schema.GoldRow
	for i := range 25 {
		dev := fmt.Sprintf("dev-%d", i%4)
		rows := []schema.GoldRow{{Device: dev, WindowStart: int64(i) * 1e6, N: 8, Windows: 8, TempC: float64(i), PressurePa: schema.Float(1e5), HumidityRH: schema.Float(50)}}
		add, err := delta.WriteFile(ctx, tb, rows, map[string]string{"device": dev})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(add.Path, "device="+dev+"/") {
			t.Errorf("path %s", add.Path)
		}
		if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}, {Txn: &delta.Txn{AppID: "app", Version: int64(i)}}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
		want = append(want, rows...)
	}
	if tb.CheckpointErr != nil {
		t.Fatal(tb.CheckpointErr)
	}
	lc, err := l.Get(ctx, delta.LastCheckpointName(schema.Gold))
	if err != nil {
		t.Fatal(err)
	}
	var last delta.LastCheckpoint
	// Version 20 holds protocol, metaData, one txn and 20 adds.
	if err := json.Unmarshal(lc, &last); err != nil || last.Version != 20 || last.Size != 23 {
		t.Fatalf("_last_checkpoint %s: %v", lc, err)
	}
	// Drop the JSON commits the checkpoint covers: a reader must use the checkpoint.
	for v := int64(0); v <= 20; v++ {
		if err := l.Delete(ctx, delta.CommitName(schema.Gold, v)); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := delta.Load(ctx, l, schema.Gold)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := snap.TxnVersion("app"); v != 24 || snap.Version != 25 {
		t.Fatalf("txn %d version %d", v, snap.Version)
	}
	got, err := delta.ReadTable[schema.GoldRow](ctx, l, schema.Gold, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := func(a, b schema.GoldRow) int { return int(a.WindowStart - b.WindowStart) }
	slices.SortFunc(got, key)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	// Only dev-1's files.
	got, err = delta.ReadTable[schema.GoldRow](ctx, l, schema.Gold, func(a delta.AddFile) bool { return a.PartitionValues["device"] == "dev-1" })
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if r.Device != "dev-1" {
			t.Fatalf("row of %s", r.Device)
		}
	}
}

func TestConcurrentWritersNeverOverwrite(t *testing.T) {
	t.Run("local", func(t *testing.T) { testConcurrentWriters(t, newLake(t)) })
	t.Run("azurite", func(t *testing.T) {
		az := testenv.AzuriteBlob(t)
		l, err := lake.NewAzure(t.Context(), lake.AzureOptions{ConnectionString: az.ConnectionString(),
			Container: fmt.Sprintf("delta-%d", rand.Uint32()), Prefix: "p"})
		if err != nil {
			t.Fatal(err)
		}
		testConcurrentWriters(t, l)
	})
}

func testConcurrentWriters(t *testing.T, l lake.Lake) {
	ctx := t.Context()
	const writers, commits = 4, 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tb, err := delta.Open[schema.SilverRow](ctx, l, schema.Silver, delta.Options{})
			if err != nil {
				errs <- err
				return
			}
			for i := range commits {
				add, err := delta.WriteFile(ctx, tb, []schema.SilverRow{{Device: fmt.Sprintf("w%d", w), WindowStart: int64(i), Count: 1}}, nil)
				if err != nil {
					errs <- err
					return
				}
				if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := delta.ReadTable[schema.SilverRow](ctx, l, schema.Silver, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != writers*commits {
		t.Fatalf("%d rows, want %d", len(got), writers*commits)
	}
	checkLog(t, l, schema.Silver)
}

func TestTxnConflict(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	a, err := delta.Open[schema.SilverRow](ctx, l, "t", delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := delta.Open[schema.SilverRow](ctx, l, "t", delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Commit(ctx, []delta.Action{{Txn: &delta.Txn{AppID: "x", Version: 1}}}, "WRITE"); err != nil {
		t.Fatal(err)
	}
	_, err = b.Commit(ctx, []delta.Action{{Txn: &delta.Txn{AppID: "x", Version: 1}}}, "WRITE")
	if !errors.Is(err, delta.ErrConflict) {
		t.Fatalf("second writer of app x: %v, want ErrConflict", err)
	}
	if _, err := b.Commit(ctx, []delta.Action{{Txn: &delta.Txn{AppID: "y", Version: 1}}}, "WRITE"); err != nil {
		t.Fatalf("other app: %v", err)
	}
}

func TestSchemaTypes(t *testing.T) {
	s, err := delta.SchemaOf[schema.SilverLateRow]()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"device": "string", "ts": "timestamp", "temp_c": "double", "fresh": "boolean", "boot": "long", "window_start": "timestamp", "watermark": "timestamp"}
	for k, typ := range want {
		f, ok := s.Field(k)
		if !ok || f.Type != typ {
			t.Errorf("field %s: %+v, want %s", k, f, typ)
		}
	}
	g, err := delta.SchemaOf[schema.GoldRow]()
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := g.Field("n"); f.Type != "integer" {
		t.Errorf("n: %+v", f)
	}
}

// ambiguousLake reports the first commit put as failed although it landed.
type ambiguousLake struct {
	lake.Lake
	tripped bool
}

func (a *ambiguousLake) PutIfAbsent(ctx context.Context, name string, data []byte) error {
	err := a.Lake.PutIfAbsent(ctx, name, data)
	if err == nil && !a.tripped && strings.Contains(name, "_delta_log/00000000000000000001") {
		a.tripped = true
		return errors.New("timeout (but written)")
	}
	return err
}

func TestCommitIDRetryAfterAmbiguousFailure(t *testing.T) {
	ctx := t.Context()
	l := &ambiguousLake{Lake: newLake(t)}
	tb, err := delta.Open[schema.SilverRow](ctx, l, "t", delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	acts := []delta.Action{{Txn: &delta.Txn{AppID: "app", Version: 1}}}
	if _, err := tb.CommitID(ctx, acts, "WRITE", "id-1"); err == nil {
		t.Fatal("no error from the ambiguous put")
	}
	v, err := tb.CommitID(ctx, acts, "WRITE", "id-1")
	if err != nil || v != 1 {
		t.Fatalf("retry: version %d, %v; want 1 (the landed commit)", v, err)
	}
	// Another writer's commit with the same app is a conflict, not ours.
	other, err := delta.Open[schema.SilverRow](ctx, l, "t", delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.CommitID(ctx, []delta.Action{{Txn: &delta.Txn{AppID: "app", Version: 2}}}, "WRITE", "id-2"); err != nil {
		t.Fatal(err)
	}
	other.Snapshot() // stale at version 1
	if _, err := other.CommitID(ctx, []delta.Action{{Txn: &delta.Txn{AppID: "app", Version: 2}}}, "WRITE", "id-3"); !errors.Is(err, delta.ErrConflict) {
		t.Fatalf("other writer: %v, want ErrConflict", err)
	}
}

// listCounter counts List calls: loading a checkpointed table must not list its log.
type listCounter struct {
	lake.Lake
	lists int
}

func (c *listCounter) List(ctx context.Context, prefix string) ([]lake.Object, error) {
	c.lists++
	return c.Lake.List(ctx, prefix)
}

func TestLoadWithoutListingAndLoadAfter(t *testing.T) {
	ctx := t.Context()
	l := &listCounter{Lake: newLake(t)}
	tb, err := delta.Open[schema.SilverRow](ctx, l, "t", delta.Options{CheckpointInterval: 5})
	if err != nil {
		t.Fatal(err)
	}
	commit := func(i int) {
		add, err := delta.WriteFile(ctx, tb, []schema.SilverRow{{Device: "a", WindowStart: int64(i)}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 12 {
		commit(i)
	}
	l.lists = 0
	snap, err := delta.Load(ctx, l, "t")
	if err != nil || snap.Version != 12 || snap.NumFiles() != 12 {
		t.Fatalf("version %d, %d files, %v", snap.Version, snap.NumFiles(), err)
	}
	if l.lists != 0 {
		t.Fatalf("Load listed the log %d times", l.lists)
	}
	commit(12)
	next, err := delta.LoadAfter(ctx, l, "t", snap)
	if err != nil || next.Version != 13 || next.NumFiles() != 13 || snap.NumFiles() != 12 {
		t.Fatalf("LoadAfter: version %d, %d files (prev %d), %v", next.Version, next.NumFiles(), snap.NumFiles(), err)
	}
	// A broken _last_checkpoint falls back to listing.
	if err := l.Put(ctx, delta.LastCheckpointName("t"), []byte("{")); err != nil {
		t.Fatal(err)
	}
	if s, err := delta.Load(ctx, l, "t"); err != nil || s.Version != 13 {
		t.Fatalf("fallback: %v", err)
	}
}
