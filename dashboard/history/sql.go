package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"time"

	"github.com/pilake/pilake/dashboard/live"
	"github.com/pilake/pilake/dashboard/series"
)

// SQL reads silver and gold through database/sql. The statements are the
// same for every engine: timestamps go through unix_micros(ts) and
// timestamp_micros(µs), which Databricks SQL has built in and which tests
// register on SQLite (RegisterSQLiteFunctions), where the tables hold
// microseconds. Only the driver name and DSN differ between the two.
type SQL struct {
	DB *sql.DB
	// SilverTable and GoldTable name the tables ("silver", "main.pilake.gold", …).
	SilverTable, GoldTable string
	// GoldN is the moving-average length shown (default 8).
	GoldN int32
	// MaxRows bounds the rows one query returns (default 200000).
	MaxRows int
}

var _ Source = (*SQL)(nil)

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$`)

// ValidTableName reports whether name is a plain (up to three-part) table
// name; table names are spliced into SQL, so nothing else is accepted.
func ValidTableName(name string) bool { return identRE.MatchString(name) }

// Validate checks the table names.
func (s *SQL) Validate() error {
	if s.DB == nil {
		return errors.New("sql source: no database")
	}
	for _, t := range []string{s.SilverTable, s.GoldTable} {
		if !ValidTableName(t) {
			return fmt.Errorf("sql source: table name %q is not a plain [catalog.][schema.]table name", t)
		}
	}
	return nil
}

func (s *SQL) goldN() int32 {
	if s.GoldN == 0 {
		return 8
	}
	return s.GoldN
}

func (s *SQL) maxRows() int {
	if s.MaxRows <= 0 {
		return 200000
	}
	return s.MaxRows
}

// Devices returns the devices with gold rows in the last 7 days.
func (s *SQL) Devices(ctx context.Context) ([]string, error) {
	since := time.Now().Add(-7 * 24 * time.Hour).UnixMicro()
	rows, err := s.DB.QueryContext(ctx,
		"SELECT DISTINCT device FROM "+s.GoldTable+" WHERE n = ? AND window_start >= timestamp_micros(?)",
		s.goldN(), since)
	if err != nil {
		return nil, fmt.Errorf("querying devices from %s: %w", s.GoldTable, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, fmt.Errorf("reading devices from %s: %w", s.GoldTable, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading devices from %s: %w", s.GoldTable, err)
	}
	sort.Strings(out)
	return out, nil
}

// Series aggregates in the engine: points are grouped into q.MaxPoints time
// buckets per device (mean time and mean values), so a 24 h range moves at
// most MaxPoints rows per device and quantity over the network.
func (s *SQL) Series(ctx context.Context, q Query) ([]series.Series, error) {
	byDev := map[string]*series.Series{}
	get := func(d string) *series.Series {
		if x, ok := byDev[d]; ok {
			return x
		}
		x := &series.Series{Device: d}
		byDev[d] = x
		return x
	}
	bucketUS := int64(1)
	if q.MaxPoints > 0 {
		bucketUS = max(1, (q.ToMS-q.FromMS)*1000/int64(q.MaxPoints)+1)
	}
	for _, t := range []struct {
		table, cols, extra string
		args               []any
		gold               bool
	}{
		{s.SilverTable, "temp_avg AS a, humidity_avg AS b, pressure_avg AS c", "", nil, false},
		{s.GoldTable, "temp_c AS a, humidity_rh AS b, pressure_pa AS c", " AND n = ?", []any{s.goldN()}, true},
	} {
		args := []any{bucketUS, q.FromMS * 1000, q.ToMS * 1000}
		args = append(args, t.args...)
		devCond := ""
		if q.Device != "" {
			devCond = " AND device = ?"
			args = append(args, q.Device)
		}
		args = append(args, s.maxRows())
		stmt := "SELECT device, avg(ts) AS t, avg(a) AS a, avg(b) AS b, avg(c) AS c FROM (" +
			"SELECT device, CAST(unix_micros(window_start) / ? AS BIGINT) AS bucket, unix_micros(window_start) AS ts, " +
			t.cols + " FROM " + t.table +
			" WHERE window_start >= timestamp_micros(?) AND window_start < timestamp_micros(?)" + t.extra + devCond +
			") AS w GROUP BY device, bucket ORDER BY device, bucket LIMIT ?"
		rows, err := s.DB.QueryContext(ctx, stmt, args...)
		if err != nil {
			return nil, fmt.Errorf("querying %s: %w", t.table, err)
		}
		for rows.Next() {
			var d string
			var ts, a, b, c sql.NullFloat64
			if err := rows.Scan(&d, &ts, &a, &b, &c); err != nil {
				rows.Close()
				return nil, fmt.Errorf("reading %s: %w", t.table, err)
			}
			if !ts.Valid || !a.Valid || !b.Valid || !c.Valid || !series.Finite(a.Float64, b.Float64, c.Float64) {
				continue // a bucket of NULLs or NaNs: nothing to draw
			}
			col := &get(d).Silver
			if t.gold {
				col = &get(d).Gold
			}
			col.Append(series.MS(int64(ts.Float64)), a.Float64, b.Float64, c.Float64)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", t.table, err)
		}
	}
	out := make([]series.Series, 0, len(byDev))
	for _, x := range byDev {
		finish(x, q)
		out = append(out, *x)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Device < out[j].Device })
	return out, nil
}

// Poller polls silver and gold incrementally (WHERE window_start > the
// newest seen) and publishes what is new to a live hub, one update per device.
type Poller struct {
	Source   *SQL
	Hub      *live.Hub
	Interval time.Duration // default 2 s
	// Timeout bounds one poll (default 30 s).
	Timeout time.Duration
	// Lookback is how far back the first poll starts (default 1 min).
	Lookback time.Duration
	// Name describes the source in the page's status (never a secret).
	Name string
	Log  *slog.Logger
	// Now is the clock (default time.Now); After waits (default time.After).
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
}

// Run polls until ctx ends.
func (p *Poller) Run(ctx context.Context) error {
	now, after := p.Now, p.After
	if now == nil {
		now = time.Now
	}
	if after == nil {
		after = time.After
	}
	interval, lookback := p.Interval, p.Lookback
	if interval <= 0 {
		interval = 2 * time.Second
	}
	if lookback <= 0 {
		lookback = time.Minute
	}
	log := p.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := now().Add(-lookback).UnixMicro()
	last := [2]int64{start, start} // silver, gold
	failing := false
	p.Hub.SetStatus("connecting", p.Name, "")
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	for {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		n, err := p.PollOnce(pctx, &last)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			if !failing {
				log.Error("polling SQL source", "source", p.Name, "err", err)
			}
			failing = true
			p.Hub.SetStatus("offline", p.Name, "query failed: "+err.Error())
		default:
			if failing {
				log.Info("SQL source is back", "source", p.Name)
			}
			failing = false
			p.Hub.SetStatus("online", p.Name, "")
			if n > 0 {
				log.Debug("polled SQL source", "rows", n)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-after(interval):
		}
	}
}

// PollOnce fetches the silver and gold rows newer than last[0] and last[1]
// (µs), publishes them, advances last, and returns how many rows it read.
func (p *Poller) PollOnce(ctx context.Context, last *[2]int64) (int, error) {
	s := p.Source
	updates := map[string]*live.Update{}
	get := func(d string) *live.Update {
		if u, ok := updates[d]; ok {
			return u
		}
		u := &live.Update{Device: d, Silver: series.Empty(), Gold: series.Empty()}
		updates[d] = u
		return u
	}
	total := 0
	for i, t := range []struct {
		table, cols, extra string
		args               []any
	}{
		{s.SilverTable, "temp_avg, humidity_avg, pressure_avg, unix_micros(window_end)", "", nil},
		{s.GoldTable, "temp_c, humidity_rh, pressure_pa, unix_micros(window_start)", " AND n = ?", []any{s.goldN()}},
	} {
		args := append([]any{last[i]}, t.args...)
		args = append(args, s.maxRows())
		rows, err := s.DB.QueryContext(ctx,
			"SELECT device, unix_micros(window_start), "+t.cols+" FROM "+t.table+
				" WHERE window_start > timestamp_micros(?)"+t.extra+" ORDER BY window_start LIMIT ?", args...)
		if err != nil {
			return total, fmt.Errorf("polling %s: %w", t.table, err)
		}
		for rows.Next() {
			var d string
			var ws, end int64
			var a, b, c float64
			if err := rows.Scan(&d, &ws, &a, &b, &c, &end); err != nil {
				rows.Close()
				return total, fmt.Errorf("reading %s: %w", t.table, err)
			}
			total++
			if ws > last[i] {
				last[i] = ws
			}
			if !series.Finite(a, b, c) {
				continue
			}
			u := get(d)
			if i == 0 {
				u.Silver.Append(series.MS(ws), a, b, c)
			} else {
				u.Gold.Append(series.MS(ws), a, b, c)
			}
			// No capture time in the tables: the newest window's end stands for it.
			if ms := float64(end) / 1000; ms > u.CaptureMS {
				u.CaptureMS = ms
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return total, fmt.Errorf("reading %s: %w", t.table, err)
		}
	}
	devs := make([]string, 0, len(updates))
	for d := range updates {
		devs = append(devs, d)
	}
	sort.Strings(devs)
	for _, d := range devs {
		u := updates[d]
		u.PublishedMS = float64(time.Now().UnixMicro()) / 1000
		if _, err := p.Hub.Publish(*u); err != nil {
			return total, err
		}
	}
	return total, nil
}
