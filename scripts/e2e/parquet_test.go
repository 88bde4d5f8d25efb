package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/arrow-go/v18/parquet/schema"
)

// checkIndependentReader opens every Parquet file of every Delta table in the
// lake with Apache Arrow's Go implementation — a reader independent of the
// parquet-go library the collector writes with — reads all columns, and checks
// the row count against the numRecords the Delta log's add action claims, and
// that timestamp columns are INT64 TIMESTAMP(MICROS, UTC) as Spark expects.
func checkIndependentReader(t *testing.T, lakeDir string) {
	t.Helper()
	ctx := context.Background()
	for _, table := range []string{"bronze", "silver", "gold"} {
		claimed := map[string]int64{} // data file → numRecords from the log's add actions
		logs, _ := filepath.Glob(filepath.Join(lakeDir, table, "_delta_log", "*.json"))
		if len(logs) == 0 {
			t.Errorf("%s: no Delta commits", table)
			continue
		}
		for _, lp := range logs {
			data, err := os.ReadFile(lp)
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				var action struct {
					Add *struct {
						Path  string `json:"path"`
						Stats string `json:"stats"`
					} `json:"add"`
				}
				if err := json.Unmarshal([]byte(line), &action); err != nil {
					t.Fatalf("%s: line is not JSON: %v", lp, err)
				}
				if action.Add == nil {
					continue
				}
				var st struct {
					NumRecords int64 `json:"numRecords"`
				}
				if err := json.Unmarshal([]byte(action.Add.Stats), &st); err != nil {
					t.Errorf("%s: add %s: stats: %v", lp, action.Add.Path, err)
				}
				claimed[action.Add.Path] = st.NumRecords
			}
		}
		files := 0
		for path, want := range claimed {
			p := filepath.Join(lakeDir, table, filepath.FromSlash(path))
			if _, err := os.Stat(p); err != nil {
				continue // removed by a later compaction (its remove action is in the log)
			}
			files++
			rdr, err := file.OpenParquetFile(p, false)
			if err != nil {
				t.Errorf("arrow cannot open %s: %v", p, err)
				continue
			}
			if rdr.NumRows() != want {
				t.Errorf("%s: %d rows, the Delta log says %d", p, rdr.NumRows(), want)
			}
			sch := rdr.MetaData().Schema
			for i := 0; i < sch.NumColumns(); i++ {
				col := sch.Column(i)
				if name := col.Name(); name == "ts" || name == "window_start" || name == "received_at" {
					ts, ok := col.LogicalType().(schema.TimestampLogicalType)
					if !ok || col.PhysicalType() != parquet.Types.Int64 || ts.TimeUnit() != schema.TimeUnitMicros || !ts.IsAdjustedToUTC() {
						t.Errorf("%s: column %s has logical type %v, want TIMESTAMP(MICROS, UTC)", p, name, col.LogicalType())
					}
				}
			}
			fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{BatchSize: 1 << 16}, memory.DefaultAllocator)
			if err != nil {
				t.Errorf("arrow: %s: %v", p, err)
				rdr.Close()
				continue
			}
			tbl, err := fr.ReadTable(ctx)
			if err != nil {
				t.Errorf("arrow cannot read %s: %v", p, err)
			} else {
				if tbl.NumRows() != want {
					t.Errorf("arrow read %d rows of %s, want %d", tbl.NumRows(), p, want)
				}
				tbl.Release()
			}
			rdr.Close()
		}
		if files == 0 {
			t.Errorf("%s: no live data files", table)
		}
		t.Logf("%s: arrow-go read %d Parquet files", table, files)
	}
}
