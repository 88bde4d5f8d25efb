package sqltest

import (
	"database/sql"
	"database/sql/driver"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"testing"

	"modernc.org/sqlite"

	"github.com/pilake/pilake/collector/schema"
)

var registerOnce sync.Once

// registerFunctions adds Databricks' unix_micros(ts) and timestamp_micros(µs)
// to SQLite. The tables store timestamps as microseconds, so both are the
// identity, as they are on Databricks up to the type.
func registerFunctions() {
	registerOnce.Do(func() {
		id := func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			switch v := args[0].(type) {
			case int64, nil:
				return v, nil
			case float64:
				return int64(v), nil
			default:
				return nil, fmt.Errorf("want microseconds, got %T", v)
			}
		}
		sqlite.MustRegisterDeterministicScalarFunction("unix_micros", 1, id)
		sqlite.MustRegisterDeterministicScalarFunction("timestamp_micros", 1, id)
	})
}

// Open returns a fresh SQLite database in t.TempDir() with empty silver and
// gold tables.
func Open(t testing.TB) *sql.DB {
	t.Helper()
	registerFunctions()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "lake.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, stmt := range []string{
		`PRAGMA synchronous = OFF`,
		`PRAGMA journal_mode = MEMORY`,
		`CREATE TABLE silver (device TEXT NOT NULL, window_start INTEGER NOT NULL, window_end INTEGER NOT NULL,
			count INTEGER, fresh_count INTEGER,
			temp_avg REAL, temp_min REAL, temp_max REAL,
			pressure_avg REAL, pressure_min REAL, pressure_max REAL,
			humidity_avg REAL, humidity_min REAL, humidity_max REAL)`,
		`CREATE TABLE gold (device TEXT NOT NULL, window_start INTEGER NOT NULL, n INTEGER NOT NULL, windows INTEGER,
			temp_c REAL, pressure_pa REAL, humidity_rh REAL)`,
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("creating tables: %v", err)
		}
	}
	return db
}

// InsertSilver adds silver rows.
func InsertSilver(t testing.TB, db *sql.DB, rows ...schema.SilverRow) {
	t.Helper()
	for _, r := range rows {
		if _, err := db.Exec(`INSERT INTO silver VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			r.Device, r.WindowStart, r.WindowEnd, r.Count, r.FreshCount, r.TempAvg, r.TempMin, r.TempMax,
			r.PressureAvg, r.PressureMin, r.PressureMax, r.HumidityAvg, r.HumidityMin, r.HumidityMax); err != nil {
			t.Fatalf("inserting silver row: %v", err)
		}
	}
}

// InsertGold adds gold rows.
func InsertGold(t testing.TB, db *sql.DB, rows ...schema.GoldRow) {
	t.Helper()
	for _, r := range rows {
		if _, err := db.Exec(`INSERT INTO gold VALUES (?,?,?,?,?,?,?)`,
			r.Device, r.WindowStart, r.N, r.Windows, r.TempC, r.PressurePa, r.HumidityRH); err != nil {
			t.Fatalf("inserting gold row: %v", err)
		}
	}
}

// Silver makes a silver row of device for the 1 s window starting at
// startUS; a NaN hum or press makes those columns null.
func Silver(device string, startUS int64, temp, hum, press float64) schema.SilverRow {
	return schema.SilverRow{Device: device, WindowStart: startUS, WindowEnd: startUS + 1e6, Count: 400, FreshCount: 100,
		TempAvg: temp, TempMin: temp - 0.1, TempMax: temp + 0.1, HumidityAvg: opt(hum, 0), HumidityMin: opt(hum, -1), HumidityMax: opt(hum, 1),
		PressureAvg: opt(press, 0), PressureMin: opt(press, -5), PressureMax: opt(press, 5)}
}

// Gold makes a gold row of device ending at the window starting at startUS;
// a NaN hum or press makes those columns null.
func Gold(device string, startUS int64, n int32, temp, hum, press float64) schema.GoldRow {
	return schema.GoldRow{Device: device, WindowStart: startUS, N: n, Windows: n, TempC: temp, HumidityRH: opt(hum, 0), PressurePa: opt(press, 0)}
}

// opt is v+d, or nil (null) when v is NaN.
func opt(v, d float64) *float64 {
	if math.IsNaN(v) {
		return nil
	}
	return schema.Float(v + d)
}
