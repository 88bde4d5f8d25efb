package stages_test

import (
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
)

// TestEveryFilePortable runs the stages (with compaction, late readings and
// a checkpoint every 2 commits) and reads the Parquet metadata and every
// page header of every file of bronze, silver, silver_late and gold,
// checkpoints included: each must hold only DataPageV1 pages and the
// encodings Spark 3.3+ and Databricks Runtime 13.3+ decode
// (delta.CheckPortable).
func TestEveryFilePortable(t *testing.T) {
	l := newLake(t)
	rng := rand.New(rand.NewPCG(21, 22))
	r := start(t, l, stages.Options{MaxSkew: -1, Clock: clockAt(t0), MaxEpochRows: 1000, CheckpointInterval: 2, CompactEvery: 4, AllowedLateness: 2 * time.Second})
	var late []*wire.Batch
	for d, dev := range []string{"dev-a", "dev-b", "dev-c"} {
		bs := makeBatches(dev, uint64(d+1), 30, 200, t0+int64(d)*1000, rng)
		late = append(late, bs[3])
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
	// Gold and silver_late commit too rarely here to reach a checkpoint:
	// write one as the pipeline would.
	checkpoint := func(tb *delta.Table, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if err := tb.Checkpoint(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	checkpoint(delta.Open[schema.GoldRow](t.Context(), l, schema.Gold, delta.Options{}))
	checkpoint(delta.Open[schema.SilverLateRow](t.Context(), l, schema.SilverLate, delta.Options{}))

	// Every table in the lake (rollups too, if the stages write them), the
	// four main ones at least.
	tables := []string{schema.Bronze, schema.Silver, schema.SilverLate, schema.Gold}
	_ = filepath.WalkDir(l.Root(), func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == "_delta_log" {
			rel, _ := filepath.Rel(l.Root(), filepath.Dir(path))
			if !slices.Contains(tables, filepath.ToSlash(rel)) {
				tables = append(tables, filepath.ToSlash(rel))
			}
			return filepath.SkipDir
		}
		return err
	})
	for _, table := range tables {
		var data, checkpoints int
		err := filepath.WalkDir(filepath.Join(l.Root(), table), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".parquet") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if strings.Contains(path, "_delta_log") {
				checkpoints++
			} else {
				data++
			}
			if err := delta.CheckPortable(b); err != nil {
				t.Errorf("%s: %v", path, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d data files, %d checkpoints checked", table, data, checkpoints)
		if data == 0 {
			t.Errorf("%s: no data files", table)
		}
		if checkpoints == 0 && slices.Contains([]string{schema.Bronze, schema.Silver, schema.SilverLate, schema.Gold}, table) {
			t.Errorf("%s: no checkpoint", table)
		}
	}
}
