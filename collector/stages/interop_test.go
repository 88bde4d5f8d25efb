package stages_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
)

// duckdbReader returns node and the directory of the independent reader
// (collector/delta/interop), installing it if needed.
func duckdbReader(t *testing.T) (node, dir string) {
	t.Helper()
	dir, _ = filepath.Abs("../delta/interop")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@duckdb", "node-api")); err != nil {
		// Install it from the lockfile (the npm registry is reachable here and in CI).
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		defer cancel()
		out, ierr := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--prefix", dir).CombinedOutput()
		if ierr != nil {
			if os.Getenv("PILAKE_TEST_REQUIRE") == "1" {
				t.Fatalf("installing the DuckDB reader (npm ci --prefix collector/delta/interop): %v\n%s", ierr, out)
			}
			t.Skipf("DuckDB reader not installed and npm ci failed: %v", ierr)
		}
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal(err)
	}
	return node, dir
}

// TestIndependentReader has a reader that shares no code with pilake
// (collector/delta/interop: the Delta log replayed in JavaScript, Parquet
// read by DuckDB) read all four tables, and compares what it sees with
// ReadTable. It runs `npm ci --prefix collector/delta/interop` if the reader
// is not installed; if that fails it skips, unless PILAKE_TEST_REQUIRE=1,
// where it fails.
func TestIndependentReader(t *testing.T) {
	node, dir := duckdbReader(t)
	l := newLake(t)
	rng := rand.New(rand.NewPCG(12, 13))
	r := start(t, l, stages.Options{MaxSkew: -1, Clock: clockAt(t0), MaxEpochRows: 2000, CheckpointInterval: 3, CompactEvery: 4, AllowedLateness: 2 * time.Second})
	var late []*wire.Batch
	for d, dev := range []string{"dev-a", "dev-b", "dev-c"} {
		bs := makeBatches(dev, uint64(d+1), 30, 200, t0+int64(d)*1000, rng)
		late = append(late, bs[3]) // sent again under a new seq after the watermark passed: late
		for _, b := range bs {
			name := landOne(t, l, time.UnixMicro(t0), b)
			if err := r.p.Submit(t.Context(), landing.Landed{Name: name, Batch: b, ReceivedAt: time.UnixMicro(t0), Source: "mqtt"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, b := range late {
		c := *b
		c.Seq = 1000
		name := landOne(t, l, time.UnixMicro(t0), &c)
		if err := r.p.Submit(t.Context(), landing.Landed{Name: name, Batch: &c, ReceivedAt: time.UnixMicro(t0), Source: "mqtt"}); err != nil {
			t.Fatal(err)
		}
	}
	r.stop(t)
	// The stages' tables get V2 checkpoints (the default policy): the
	// independent reader reads them through their sidecars.
	if _, err := l.Get(t.Context(), delta.LastCheckpointName(schema.Bronze)); err != nil {
		t.Fatalf("bronze has no checkpoint: %v", err)
	}
	if objs, err := l.List(t.Context(), schema.Bronze+"/_delta_log/_sidecars/"); err != nil || len(objs) == 0 {
		t.Fatalf("bronze's checkpoint has no sidecars (%v)", err)
	}

	cmd := exec.Command(node, filepath.Join(dir, "check.mjs"), l.Root())
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("independent reader: %v", err)
	}
	var got map[string]struct {
		Files  int               `json:"files"`
		Rows   int               `json:"rows"`
		Types  map[string]string `json:"types"`
		Schema map[string]string `json:"schema"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := map[string]int{
		schema.Bronze:     len(readAll[schema.BronzeRow](t, l, schema.Bronze)),
		schema.Silver:     len(readAll[schema.SilverRow](t, l, schema.Silver)),
		schema.SilverLate: len(readAll[schema.SilverLateRow](t, l, schema.SilverLate)),
		schema.Gold:       len(readAll[schema.GoldRow](t, l, schema.Gold)),
	}
	if want[schema.SilverLate] != 3*200 || want[schema.Bronze] != 3*31*200 {
		t.Fatalf("pilake reads %v", want)
	}
	for table, n := range want {
		g := got[table]
		if g.Rows != n {
			t.Errorf("%s: independent reader sees %d rows in %d files, pilake %d", table, g.Rows, g.Files, n)
		}
	}
	// Parquet types as an independent reader sees them, for each Delta type.
	duck := map[string]string{"timestamp": "TIMESTAMP WITH TIME ZONE", "double": "DOUBLE", "long": "BIGINT",
		"integer": "INTEGER", "boolean": "BOOLEAN", "string": "VARCHAR"}
	for table, g := range got {
		for col, dt := range g.Schema {
			if g.Types[col] != duck[dt] {
				t.Errorf("%s.%s: Delta type %s read as %s, want %s", table, col, dt, g.Types[col], duck[dt])
			}
		}
	}
	t.Logf("independent reader: %s", out)
}
