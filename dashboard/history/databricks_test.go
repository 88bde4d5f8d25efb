package history_test

// The SQL source against a stand-in Databricks SQL warehouse
// (dashboard/internal/dbsqltest): the real databricks-sql-go driver sends
// the statements and their bound parameters over its Thrift protocol; the
// stand-in checks them by Spark's rules and runs them on SQLite. Databricks
// itself cannot run here (see dashboard/README.md for what that leaves
// untested).

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	_ "github.com/databricks/databricks-sql-go" // the "databricks" driver
	dbsqllog "github.com/databricks/databricks-sql-go/logger"

	"github.com/pilake/pilake/dashboard/history"
	"github.com/pilake/pilake/dashboard/internal/dbsqltest"
	"github.com/pilake/pilake/dashboard/internal/sqltest"
	"github.com/pilake/pilake/dashboard/live"
	"github.com/pilake/pilake/internal/clock"
)

// warehouse opens the driver against the stand-in warehouse that runs on db.
func warehouse(t *testing.T, db *sql.DB) (*sql.DB, *dbsqltest.Warehouse) {
	t.Helper()
	_ = dbsqllog.SetLogLevel("disabled")
	w := dbsqltest.New(t, db, "dapi-test-token")
	dbx, err := sql.Open("databricks", w.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dbx.Close() })
	return dbx, w
}

// engines are the same tables read directly (SQLite) and through the driver.
func engines(t *testing.T, db *sql.DB) (map[string]*sql.DB, *dbsqltest.Warehouse) {
	dbx, w := warehouse(t, db)
	return map[string]*sql.DB{"sqlite": db, "databricks": dbx}, w
}

// checkStatements fails on any statement the warehouse refused, and checks
// the parameter types are those the driver binds: BIGINT for Go integers
// (so every LIMIT must be a CAST), STRING for device ids.
func checkStatements(t *testing.T, w *dbsqltest.Warehouse) {
	t.Helper()
	stmts := w.Statements()
	if len(stmts) == 0 {
		t.Fatal("the warehouse received no statement")
	}
	for _, s := range stmts {
		if s.Err != "" {
			t.Errorf("warehouse refused %q: %s", s.SQL, s.Err)
		}
		if strings.Contains(strings.ToUpper(s.SQL), "LIMIT ?") {
			t.Errorf("LIMIT bound directly to a parameter (the driver sends BIGINT): %s", s.SQL)
		}
		for _, p := range s.Params {
			if p.Type != "BIGINT" && p.Type != "STRING" {
				t.Errorf("parameter of type %s in %q", p.Type, s.SQL)
			}
		}
	}
}

// The bug of issue 13 item 1, caught by the stand-in: LIMIT ? with a Go int.
func TestDatabricksRefusesBigintLimit(t *testing.T) {
	db := sqltest.Open(t)
	dbx, w := warehouse(t, db)
	_, err := dbx.QueryContext(t.Context(), "SELECT device FROM silver ORDER BY device LIMIT ?", 10)
	if err == nil || !strings.Contains(err.Error(), "INVALID_LIMIT_LIKE_EXPRESSION.DATA_TYPE") {
		t.Fatalf("LIMIT ? with a BIGINT: err %v, want INVALID_LIMIT_LIKE_EXPRESSION.DATA_TYPE", err)
	}
	if got := w.Statements(); len(got) != 1 || len(got[0].Params) != 1 || got[0].Params[0].Type != "BIGINT" {
		t.Errorf("statements %+v, want one with a BIGINT parameter", got)
	}
	for _, stmt := range []string{
		"SELECT device FROM silver ORDER BY device LIMIT CAST(? AS INT)",
		"SELECT device FROM silver WHERE window_start > timestamp_micros(?) LIMIT 5",
	} {
		rows, err := dbx.QueryContext(t.Context(), stmt, 10)
		if err != nil {
			t.Errorf("%s: %v", stmt, err)
			continue
		}
		rows.Close()
	}
	if _, err := dbx.QueryContext(t.Context(), "SELECT device FROM silver WHERE window_start > timestamp_micros(?)", 1.5); err == nil {
		t.Error("timestamp_micros of a DOUBLE accepted")
	}
}

// Every statement of the source, through the driver, gives what SQLite gives.
func TestDatabricksSourceAgreesWithSQLite(t *testing.T) {
	db := sqltest.Open(t)
	now := time.Now()
	base := now.Add(-25 * time.Minute).Truncate(time.Second).UnixMicro()
	for _, dev := range []string{"dev-a", "dev-b", "dev-c"} {
		for i := range int64(120) {
			ws := base + i*10e6
			sqltest.InsertSilver(t, db, sqltest.Silver(dev, ws, 20+float64(i%7), 40, 101000))
			sqltest.InsertGold(t, db, sqltest.Gold(dev, ws, 8, 21+float64(i%5), 41, 101001), sqltest.Gold(dev, ws, 15, -1, -1, -1))
		}
	}
	dbs, w := engines(t, db)
	q := history.Query{FromMS: base/1000 - 1000, ToMS: now.UnixMilli(), MaxPoints: 50}
	results := map[string][]any{}
	for name, d := range dbs {
		src := &history.SQL{DB: d, SilverTable: "silver", GoldTable: "gold", GoldN: 8, PageRows: 7}
		devs, err := src.Devices(t.Context())
		if err != nil {
			t.Fatalf("%s devices: %v", name, err)
		}
		all, err := src.Series(t.Context(), q)
		if err != nil {
			t.Fatalf("%s series: %v", name, err)
		}
		one := q
		one.Device = "dev-b"
		b, err := src.Series(t.Context(), one)
		if err != nil {
			t.Fatalf("%s series of one device: %v", name, err)
		}
		hub := live.NewHub(64, nil)
		p := &history.Poller{Source: src, Hub: hub, Clock: clock.NewFake(now)}
		c := history.NewCursor(now.Add(-10 * time.Minute).UnixMicro())
		var polled []int
		for range 20 {
			n, err := p.PollOnce(t.Context(), c)
			if err != nil {
				t.Fatalf("%s poll: %v", name, err)
			}
			if n == 0 {
				break
			}
			polled = append(polled, n)
		}
		results[name] = []any{devs, all, b, polled, updates(t, hub, 0)}
		if len(all) != 3 || all[0].Silver.Len() == 0 || all[2].Gold.Len() == 0 || len(b) != 1 {
			t.Errorf("%s: series %d devices, one-device query %d", name, len(all), len(b))
		}
	}
	if !reflect.DeepEqual(results["sqlite"][:4], results["databricks"][:4]) {
		t.Errorf("through the driver:\n%+v\ndirectly:\n%+v", results["databricks"][:4], results["sqlite"][:4])
	}
	ud, us := results["databricks"][4].([]live.Update), results["sqlite"][4].([]live.Update)
	if len(ud) != len(us) || len(ud) == 0 {
		t.Fatalf("%d live updates through the driver, %d directly", len(ud), len(us))
	}
	for i := range ud {
		if !reflect.DeepEqual(ud[i].Silver, us[i].Silver) || !reflect.DeepEqual(ud[i].Gold, us[i].Gold) {
			t.Errorf("live update %d differs", i)
		}
	}
	checkStatements(t, w)
}

// Series reads every bucket, page after page, and a range beyond MaxRows
// is an error naming the cap, never a silent cut.
func TestSeriesPagesThroughAndNamesTheCap(t *testing.T) {
	db := sqltest.Open(t)
	base := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMicro()
	var devs []string
	for d := range 40 {
		dev := "dev-" + string(rune('a'+d%26)) + string(rune('a'+d/26))
		devs = append(devs, dev)
		for i := range int64(5) {
			sqltest.InsertSilver(t, db, sqltest.Silver(dev, base+i*1e6, 20, 40, 101000))
			sqltest.InsertGold(t, db, sqltest.Gold(dev, base+i*1e6, 8, 20, 40, 101000))
		}
	}
	dbs, w := engines(t, db)
	q := history.Query{FromMS: base / 1000, ToMS: base/1000 + 10000, MaxPoints: 100}
	for name, d := range dbs {
		whole, err := (&history.SQL{DB: d, SilverTable: "silver", GoldTable: "gold"}).Series(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		paged, err := (&history.SQL{DB: d, SilverTable: "silver", GoldTable: "gold", PageRows: 9}).Series(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		if len(whole) != 40 || !reflect.DeepEqual(whole, paged) {
			t.Errorf("%s: %d devices in one page, paged result equal: %v", name, len(whole), reflect.DeepEqual(whole, paged))
		}
		for _, s := range paged {
			if s.Silver.Len() != 5 || s.Gold.Len() != 5 {
				t.Errorf("%s %s: %d silver, %d gold points, want 5", name, s.Device, s.Silver.Len(), s.Gold.Len())
			}
		}
		_, err = (&history.SQL{DB: d, SilverTable: "silver", GoldTable: "gold", PageRows: 9, MaxRows: 100}).Series(t.Context(), q)
		if !errors.Is(err, history.ErrTooManyRows) || !strings.Contains(err.Error(), "100") {
			t.Errorf("%s: 400 buckets with MaxRows 100: %v, want ErrTooManyRows naming 100", name, err)
		}
	}
	checkStatements(t, w)
}

// Issue 13 item 2: a device whose windows become final after another
// device's newer ones is still pushed, and rows tied at a page's end are not
// skipped.
func TestPollerKeepsOneCursorPerDevice(t *testing.T) {
	db := sqltest.Open(t)
	now := time.Now().Truncate(time.Second)
	t0 := now.Add(-20 * time.Second).UnixMicro()
	dbs, w := engines(t, db)
	for _, name := range []string{"sqlite", "databricks"} {
		t.Run(name, func(t *testing.T) {
			if _, err := db.Exec("DELETE FROM silver"); err != nil {
				t.Fatal(err)
			}
			src := &history.SQL{DB: dbs[name], SilverTable: "silver", GoldTable: "gold", PageRows: 2}
			hub := live.NewHub(256, nil)
			p := &history.Poller{Source: src, Hub: hub, Clock: clock.NewFake(now)}
			c := history.NewCursor(now.Add(-time.Minute).UnixMicro())
			// dev-a is ahead: its window at t0+10 s is final first
			sqltest.InsertSilver(t, db, sqltest.Silver("dev-a", t0+10e6, 21, 40, 101000))
			pollAll(t, p, c)
			// dev-b's window at t0+5 s becomes final later
			sqltest.InsertSilver(t, db, sqltest.Silver("dev-b", t0+5e6, 22, 40, 101000))
			// three devices tied at t0+11 s, with a page of two rows
			for _, d := range []string{"dev-c", "dev-d", "dev-e"} {
				sqltest.InsertSilver(t, db, sqltest.Silver(d, t0+11e6, 23, 40, 101000))
			}
			pollAll(t, p, c)
			// and nothing twice
			sqltest.InsertSilver(t, db, sqltest.Silver("dev-b", t0+6e6, 24, 40, 101000))
			pollAll(t, p, c)
			seen := map[string][]int64{}
			for _, u := range updates(t, hub, 0) {
				for _, ms := range u.Silver.T {
					seen[u.Device] = append(seen[u.Device], int64(ms))
				}
			}
			want := map[string][]int64{"dev-a": {(t0 + 10e6) / 1000}, "dev-b": {(t0 + 5e6) / 1000, (t0 + 6e6) / 1000},
				"dev-c": {(t0 + 11e6) / 1000}, "dev-d": {(t0 + 11e6) / 1000}, "dev-e": {(t0 + 11e6) / 1000}}
			if !reflect.DeepEqual(seen, want) {
				t.Errorf("pushed %v, want %v", seen, want)
			}
		})
	}
	checkStatements(t, w)
}

func pollAll(t *testing.T, p *history.Poller, c *history.Cursor) {
	t.Helper()
	for range 10 {
		n, err := p.PollOnce(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
	t.Fatal("polling never ran dry")
}

// A driver's error reaches the log in full and callers (so browsers) only as
// ErrQueryFailed.
func TestDriverErrorsAreLoggedNotReturned(t *testing.T) {
	db := sqltest.Open(t)
	dbx, w := warehouse(t, db)
	const detail = "internal detail of warehouse abc123 at host secret-host.example"
	w.FailWith(detail)
	var logs bytes.Buffer
	src := &history.SQL{DB: dbx, SilverTable: "silver", GoldTable: "gold", Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	_, err := src.Series(t.Context(), history.Query{FromMS: 0, ToMS: 1000})
	if !errors.Is(err, history.ErrQueryFailed) || strings.Contains(err.Error(), "secret-host") || strings.Contains(err.Error(), "databricks:") {
		t.Errorf("Series error %q: want ErrQueryFailed without the driver's text", err)
	}
	if !strings.Contains(logs.String(), "secret-host") {
		t.Errorf("log lacks the driver's error:\n%s", logs.String())
	}
	hub := live.NewHub(4, nil)
	ctx, cancel := context.WithCancel(t.Context())
	p := &history.Poller{Source: src, Hub: hub, Name: "databricks test", Clock: stepClock{after: func(time.Duration) <-chan time.Time {
		cancel()
		return make(chan time.Time)
	}}}
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if st := hub.Status(); st.Live != "offline" || strings.Contains(st.Detail, "secret-host") || st.Detail == "" {
		t.Errorf("status %+v: want offline with a generic reason", st)
	}
}

func TestValidPathTableName(t *testing.T) {
	for name, ok := range map[string]bool{
		"delta.`abfss://lake@acct.dfs.core.windows.net/pilake/gold`": true,
		"delta.`/mnt/lake/gold`":                                     true,
		"delta.`abfss://x/gold`; DROP TABLE y --`":                   false,
		"delta.`/a b`":              false,
		"delta.`/a'b`":              false,
		"delta.`s3://bucket/gold``": false,
		"main.pilake.gold":          true,
	} {
		if history.ValidTableName(name) != ok {
			t.Errorf("ValidTableName(%q) = %v", name, !ok)
		}
	}
}

func TestPollingHours(t *testing.T) {
	h, err := history.ParseHours("07:00-19:30", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	night, err := history.ParseHours("22:00-06:00", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	at := func(hh, mm int) time.Time { return time.Date(2026, 11, 29, hh, mm, 0, 0, time.UTC) }
	for _, tc := range []struct {
		h    history.Hours
		t    time.Time
		want bool
	}{
		{h, at(6, 59), false}, {h, at(7, 0), true}, {h, at(19, 29), true}, {h, at(19, 30), false},
		{night, at(23, 0), true}, {night, at(5, 59), true}, {night, at(12, 0), false},
		{history.Hours{}, at(3, 0), true},
	} {
		if got := tc.h.Contains(tc.t); got != tc.want {
			t.Errorf("%v contains %v: %v", tc.h, tc.t.Format("15:04"), got)
		}
	}
	for _, bad := range []string{"7-19", "07:00", "07:00-07:00", "25:00-01:00"} {
		if _, err := history.ParseHours(bad, time.UTC); err == nil {
			t.Errorf("ParseHours(%q) accepted", bad)
		}
	}
}

// Outside its hours, and while nobody watches with OnlyWatched, the poller
// sends no statement at all (the warehouse can auto-stop).
func TestPollerIdlesWithoutQueries(t *testing.T) {
	db := sqltest.Open(t)
	dbx, w := warehouse(t, db)
	src := &history.SQL{DB: dbx, SilverTable: "silver", GoldTable: "gold"}
	for name, p := range map[string]*history.Poller{
		"off hours":  {Hours: history.Hours{From: time.Hour, To: 2 * time.Hour, Loc: time.UTC}},
		"no viewers": {OnlyWatched: true},
	} {
		noon := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
		p.Source, p.Hub = src, live.NewHub(4, nil)
		waits := 0
		ctx, cancel := context.WithCancel(t.Context())
		p.Clock = stepClock{now: noon, after: func(time.Duration) <-chan time.Time {
			waits++
			ch := make(chan time.Time, 1)
			if waits == 5 {
				cancel()
			} else {
				ch <- time.Time{}
			}
			return ch
		}}
		if err := p.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if n := len(w.Statements()); n != 0 {
			t.Errorf("%s: %d statements sent", name, n)
		}
	}
}

// stepClock is a clock.Clock whose waits a test decides (after), standing
// at now.
type stepClock struct {
	now   time.Time
	after func(time.Duration) <-chan time.Time
}

func (c stepClock) Now() time.Time                         { return c.now }
func (c stepClock) After(d time.Duration) <-chan time.Time { return c.after(d) }
