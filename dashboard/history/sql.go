package history

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/pilake/pilake/dashboard/live"
	"github.com/pilake/pilake/dashboard/series"
	"github.com/pilake/pilake/internal/clock"
)

// SQL reads silver and gold through database/sql. The statements are the
// same for every engine: timestamps go through unix_micros(ts) and
// timestamp_micros(µs), which Databricks SQL has built in and which tests
// register on SQLite (RegisterSQLiteFunctions), where the tables hold
// microseconds. Only the driver name and DSN differ between the two.
//
// Parameters are written for Spark's rules as databricks-sql-go binds them:
// every Go integer goes out as BIGINT, so a LIMIT is CAST(? AS INT) (Spark
// requires an INT there). Results are read in pages of PageRows (keyset
// pagination, never OFFSET), so nothing is dropped silently: beyond MaxRows a
// call fails with ErrTooManyRows, naming the cap.
type SQL struct {
	DB *sql.DB
	// SilverTable and GoldTable name the tables ("silver", "main.pilake.gold",
	// "delta.`abfss://…/gold`", …).
	SilverTable, GoldTable string
	// GoldN is the moving-average length shown (default 8).
	GoldN int32
	// PageRows is the most rows one statement returns (default 50000).
	PageRows int
	// MaxRows bounds the rows one Series call reads over all its pages
	// (default 2000000); beyond it Series fails with ErrTooManyRows.
	MaxRows int
	// Logger receives the driver's errors in full; callers (and so browsers)
	// get ErrQueryFailed without the driver's text (default: discard).
	Logger *slog.Logger
}

var _ Source = (*SQL)(nil)

// ErrQueryFailed is what callers see of a failed statement: the driver's
// error is logged, not returned, because its text (host names, SQL, the
// warehouse's messages) is not for browsers.
var ErrQueryFailed = errors.New("query failed (details in the dashboard's log)")

// ErrTooManyRows is returned when a range holds more rows than SQL.MaxRows.
var ErrTooManyRows = errors.New("too many rows")

var (
	identRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$`)
	deltaPathRE = regexp.MustCompile("^delta\\.`[A-Za-z][A-Za-z0-9+.-]*:/[A-Za-z0-9/._@:=+-]*`$|^delta\\.`/[A-Za-z0-9/._@:=+-]*`$")
)

// ValidTableName reports whether name is a plain (up to three-part) table
// name, or a path table delta.`<url or absolute path>` whose path holds only
// URL-safe characters (no quote, backtick, space or semicolon); table names
// are spliced into SQL, so nothing else is accepted.
func ValidTableName(name string) bool {
	return identRE.MatchString(name) || deltaPathRE.MatchString(name)
}

// Validate checks the table names.
func (s *SQL) Validate() error {
	if s.DB == nil {
		return errors.New("sql source: no database")
	}
	for _, t := range []string{s.SilverTable, s.GoldTable} {
		if !ValidTableName(t) {
			return fmt.Errorf("sql source: table name %q is not a plain [catalog.][schema.]table name or delta.`path`", t)
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

func (s *SQL) pageRows() int {
	if s.PageRows <= 0 {
		return 50000
	}
	return s.PageRows
}

func (s *SQL) maxRows() int {
	if s.MaxRows <= 0 {
		return 2000000
	}
	return s.MaxRows
}

// failed logs a driver error in full and returns what callers may see: the
// context's error when it ended, ErrQueryFailed otherwise.
func (s *SQL) failed(ctx context.Context, what, table string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s %s: %w", what, table, ctx.Err())
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log.Error("SQL source query failed", "op", what, "table", table, "err", err)
	return fmt.Errorf("%s %s: %w", what, table, ErrQueryFailed)
}

// Devices returns the devices with gold rows in the last 7 days.
func (s *SQL) Devices(ctx context.Context) ([]string, error) {
	since := time.Now().Add(-7 * 24 * time.Hour).UnixMicro()
	rows, err := s.DB.QueryContext(ctx,
		"SELECT DISTINCT device FROM "+s.GoldTable+" WHERE n = ? AND window_start >= timestamp_micros(?)",
		s.goldN(), since)
	if err != nil {
		return nil, s.failed(ctx, "querying devices from", s.GoldTable, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, s.failed(ctx, "reading devices from", s.GoldTable, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, s.failed(ctx, "reading devices from", s.GoldTable, err)
	}
	sort.Strings(out)
	return out, nil
}

// Series aggregates in the engine: points are grouped into q.MaxPoints time
// buckets per device (mean time and mean values), so a 24 h range moves at
// most MaxPoints rows per device and quantity over the network. Buckets are
// read in pages ordered by (device, bucket), each page continuing after the
// last (device, bucket) of the one before.
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
	page, total := s.pageRows(), 0
	for _, t := range []struct {
		table, cols, extra string
		args               []any
		gold               bool
	}{
		{s.SilverTable, "temp_avg AS a, humidity_avg AS b, pressure_avg AS c", "", nil, false},
		{s.GoldTable, "temp_c AS a, humidity_rh AS b, pressure_pa AS c", " AND n = ?", []any{s.goldN()}, true},
	} {
		devCond := ""
		if q.Device != "" {
			devCond = " AND device = ?"
		}
		stmt := "SELECT device, bucket, t, a, b, c FROM (" +
			"SELECT device, bucket, avg(ts) AS t, avg(a) AS a, avg(b) AS b, avg(c) AS c FROM (" +
			"SELECT device, CAST(unix_micros(window_start) / ? AS BIGINT) AS bucket, unix_micros(window_start) AS ts, " +
			t.cols + " FROM " + t.table +
			" WHERE window_start >= timestamp_micros(?) AND window_start < timestamp_micros(?)" + t.extra + devCond +
			") AS w GROUP BY device, bucket) AS g" +
			" WHERE device > ? OR (device = ? AND bucket > ?) ORDER BY device, bucket LIMIT CAST(? AS INT)"
		afterDev, afterBucket := "", int64(-1<<62)
		for {
			args := []any{bucketUS, q.FromMS * 1000, q.ToMS * 1000}
			args = append(args, t.args...)
			if q.Device != "" {
				args = append(args, q.Device)
			}
			args = append(args, afterDev, afterDev, afterBucket, page)
			rows, err := s.DB.QueryContext(ctx, stmt, args...)
			if err != nil {
				return nil, s.failed(ctx, "querying", t.table, err)
			}
			n := 0
			for rows.Next() {
				var d string
				var bucket int64
				var ts, a, b, c sql.NullFloat64
				if err := rows.Scan(&d, &bucket, &ts, &a, &b, &c); err != nil {
					rows.Close()
					return nil, s.failed(ctx, "reading", t.table, err)
				}
				n++
				afterDev, afterBucket = d, bucket
				hum, press, ok := values(a, b, c)
				if !ts.Valid || !ok {
					continue // no temperature, or NaNs: nothing to draw
				}
				col := &get(d).Silver
				if t.gold {
					col = &get(d).Gold
				}
				col.Append(series.MS(int64(ts.Float64)), a.Float64, hum, press)
			}
			err = rows.Err()
			rows.Close()
			if err != nil {
				return nil, s.failed(ctx, "reading", t.table, err)
			}
			total += n
			if n < page {
				break
			}
			if total >= s.maxRows() {
				return nil, fmt.Errorf("%w: %s and %s hold more than %d buckets for this range (the SQL source's MaxRows, --sql-max-rows); pick one device or a shorter range",
					ErrTooManyRows, s.SilverTable, s.GoldTable, s.maxRows())
			}
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

// Hours is a daily window of local time [From, To) in which the poller runs;
// To before From wraps past midnight. The zero value means always.
type Hours struct {
	From, To time.Duration // since midnight
	Loc      *time.Location
}

// ParseHours reads "HH:MM-HH:MM" ("" for always).
func ParseHours(s string, loc *time.Location) (Hours, error) {
	if s == "" {
		return Hours{}, nil
	}
	from, to, ok := strings.Cut(s, "-")
	parse := func(x string) (time.Duration, error) {
		t, err := time.Parse("15:04", strings.TrimSpace(x))
		if err != nil {
			return 0, err
		}
		return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
	}
	f, err1 := parse(from)
	t, err2 := parse(to)
	if !ok || err1 != nil || err2 != nil || f == t {
		return Hours{}, fmt.Errorf("hours %q: want HH:MM-HH:MM, two different times", s)
	}
	return Hours{From: f, To: t, Loc: loc}, nil
}

// Always reports whether h is the zero value.
func (h Hours) Always() bool { return h.From == h.To }

// Contains reports whether t falls in the window.
func (h Hours) Contains(t time.Time) bool {
	if h.Always() {
		return true
	}
	if h.Loc != nil {
		t = t.In(h.Loc)
	}
	d := time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute + time.Duration(t.Second())*time.Second
	if h.From < h.To {
		return d >= h.From && d < h.To
	}
	return d >= h.From || d < h.To
}

func (h Hours) String() string {
	f := func(d time.Duration) string { return fmt.Sprintf("%02d:%02d", int(d.Hours()), int(d.Minutes())%60) }
	return f(h.From) + "-" + f(h.To)
}

// Poller polls silver and gold incrementally and publishes what is new to a
// live hub, one update per device. It keeps one cursor per device (the
// newest window seen), so a device whose windows become final after another
// device's newer ones is still pushed, and rows tied on window_start are
// never skipped. Every poll is a query on the warehouse: see Interval,
// OnlyWatched and Hours for what keeps a warehouse from auto-stopping.
type Poller struct {
	Source   *SQL
	Hub      *live.Hub
	Interval time.Duration // default 2 s
	// Timeout bounds one poll (default 30 s).
	Timeout time.Duration
	// Lookback is how far back the first poll starts (default 1 min).
	Lookback time.Duration
	// Horizon is how far back a device's cursor is kept (default 15 min): a
	// device silent for longer is forgotten and, when it comes back, is read
	// from Horizon ago, so every poll scans at most Horizon of each table.
	Horizon time.Duration
	// OnlyWatched skips polls while nobody has the live stream open (the
	// warehouse can then auto-stop); the first viewer resumes polling.
	OnlyWatched bool
	// Hours limits polling to a daily window (zero: always).
	Hours Hours
	// Name describes the source in the page's status (never a secret).
	Name   string
	Logger *slog.Logger
	// Clock tells the time (polling hours, the cursor's start) and waits
	// between polls [clock.Real].
	Clock clock.Clock
}

// Cursor is where live polling stands: per table and device, the newest
// window_start seen (µs), and where devices not yet seen start.
type Cursor struct {
	start int64
	dev   [2]map[string]int64 // silver, gold
	full  bool                // the last poll filled a page: more is waiting
}

// NewCursor starts polling at startUS (unix µs) for every device.
func NewCursor(startUS int64) *Cursor {
	return &Cursor{start: startUS, dev: [2]map[string]int64{{}, {}}}
}

// Run polls until ctx ends.
func (p *Poller) Run(ctx context.Context) error {
	clk := p.clock()
	now, after := clk.Now, clk.After
	interval, lookback := p.Interval, p.Lookback
	if interval <= 0 {
		interval = 2 * time.Second
	}
	if lookback <= 0 {
		lookback = time.Minute
	}
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cur := NewCursor(now().Add(-lookback).UnixMicro())
	failing, paused := false, false
	p.Hub.SetStatus("connecting", p.Name, "")
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	for {
		wait := interval
		switch {
		case !p.Hours.Contains(now()):
			if !paused {
				log.Info("SQL source paused outside its polling hours", "source", p.Name, "hours", p.Hours.String())
				p.Hub.SetStatus("offline", p.Name, "paused outside the polling hours "+p.Hours.String())
			}
			paused = true
		case p.OnlyWatched && p.Hub.Subscribers() == 0:
			// nobody watching: no query, so the warehouse may auto-stop
		default:
			if paused {
				log.Info("SQL source resumes polling", "source", p.Name)
			}
			paused = false
			pctx, cancel := context.WithTimeout(ctx, timeout)
			n, err := p.PollOnce(pctx, cur)
			cancel()
			switch {
			case err != nil && ctx.Err() != nil:
				return nil
			case err != nil:
				if !failing {
					log.Error("polling SQL source", "source", p.Name, "err", err)
				}
				failing = true
				p.Hub.SetStatus("offline", p.Name, "query failed (details in the dashboard's log)")
			default:
				if failing {
					log.Info("SQL source is back", "source", p.Name)
				}
				failing = false
				p.Hub.SetStatus("online", p.Name, "")
				if n > 0 {
					log.Debug("polled SQL source", "rows", n)
				}
				if cur.full {
					wait = 0 // a page was full: read the rest now
				}
			}
		}
		if wait == 0 {
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-after(wait):
		}
	}
}

func (p *Poller) clock() clock.Clock {
	if p.Clock == nil {
		return clock.Real
	}
	return p.Clock
}

// PollOnce fetches, per table, one page of the rows newer than each
// device's cursor, publishes them, advances the cursors, and returns how many
// rows it read. Rows come in (window_start, device) order, which is unique
// per table, so a page cut anywhere leaves nothing behind that the next poll
// would not read.
func (p *Poller) PollOnce(ctx context.Context, c *Cursor) (int, error) {
	s := p.Source
	horizon := p.Horizon
	if horizon <= 0 {
		horizon = 15 * time.Minute
	}
	oldest := p.clock().Now().Add(-horizon).UnixMicro()
	page := s.pageRows()
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
	c.full = false
	for i, t := range []struct {
		table, cols, extra string
		args               []any
	}{
		{s.SilverTable, "temp_avg, humidity_avg, pressure_avg, unix_micros(window_end)", "", nil},
		{s.GoldTable, "temp_c, humidity_rh, pressure_pa, unix_micros(window_start)", " AND n = ?", []any{s.goldN()}},
	} {
		cursors := c.dev[i]
		for d, ws := range cursors {
			if ws < oldest {
				delete(cursors, d) // silent beyond the horizon: read like a new device
			}
		}
		newFrom := max(c.start, oldest)
		cond, args := cursorCondition(cursors, newFrom)
		floor := newFrom
		for _, ws := range cursors {
			floor = min(floor, ws)
		}
		args = append([]any{floor}, args...)
		args = append(args, t.args...)
		args = append(args, page)
		rows, err := s.DB.QueryContext(ctx,
			"SELECT device, unix_micros(window_start), "+t.cols+" FROM "+t.table+
				" WHERE window_start > timestamp_micros(?) AND ("+cond+")"+t.extra+
				" ORDER BY window_start, device LIMIT CAST(? AS INT)", args...)
		if err != nil {
			return total, s.failed(ctx, "polling", t.table, err)
		}
		n := 0
		for rows.Next() {
			var d string
			var ws, end int64
			var a, b, cc sql.NullFloat64
			if err := rows.Scan(&d, &ws, &a, &b, &cc, &end); err != nil {
				rows.Close()
				return total, s.failed(ctx, "reading", t.table, err)
			}
			n++
			if ws > cursors[d] {
				cursors[d] = ws
			}
			hum, press, ok := values(a, b, cc)
			if !ok {
				continue
			}
			u := get(d)
			if i == 0 {
				u.Silver.Append(series.MS(ws), a.Float64, hum, press)
			} else {
				u.Gold.Append(series.MS(ws), a.Float64, hum, press)
			}
			// No capture time in the tables: the newest window's end stands for it.
			if ms := float64(end) / 1000; ms > u.CaptureMS {
				u.CaptureMS = ms
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return total, s.failed(ctx, "reading", t.table, err)
		}
		total += n
		if n == page {
			c.full = true
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

// cursorCondition is the WHERE clause that selects, per device, the rows
// after its cursor, and for devices without one the rows after newFrom.
// Devices sharing a cursor (live devices usually do: their newest windows
// start on the same second) share one IN list, so the clause grows with
// the number of distinct cursors, and the NOT IN list with the devices.
func cursorCondition(cursors map[string]int64, newFrom int64) (string, []any) {
	if len(cursors) == 0 {
		return "window_start > timestamp_micros(?)", []any{newFrom}
	}
	byWS := map[int64][]string{}
	for d, ws := range cursors {
		byWS[ws] = append(byWS[ws], d)
	}
	wss := make([]int64, 0, len(byWS))
	for ws := range byWS {
		wss = append(wss, ws)
	}
	sort.Slice(wss, func(i, j int) bool { return wss[i] < wss[j] })
	var b strings.Builder
	var args []any
	all := make([]string, 0, len(cursors))
	for _, ws := range wss {
		devs := byWS[ws]
		sort.Strings(devs)
		all = append(all, devs...)
		b.WriteString("(device IN (")
		for j, d := range devs {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("?")
			args = append(args, d)
		}
		b.WriteString(") AND window_start > timestamp_micros(?)) OR ")
		args = append(args, ws)
	}
	sort.Strings(all)
	b.WriteString("(device NOT IN (")
	for j, d := range all {
		if j > 0 {
			b.WriteString(", ")
		}
		b.WriteString("?")
		args = append(args, d)
	}
	b.WriteString(") AND window_start > timestamp_micros(?))")
	args = append(args, newFrom)
	return b.String(), args
}

// values checks a row's temperature, humidity and pressure: ok is false
// unless the temperature is a finite number and the others are finite or
// NULL (no humidity from a BMP280, no pressure from the Azure simulator;
// SQL's avg of a bucket is NULL when none of its windows has one). A NULL
// is returned as NaN: a gap on the chart.
func values(temp, hum, press sql.NullFloat64) (h, p float64, ok bool) {
	h, p = series.Opt(nil), series.Opt(nil)
	if hum.Valid {
		h = hum.Float64
	}
	if press.Valid {
		p = press.Float64
	}
	ok = temp.Valid && series.FiniteOrMissing(temp.Float64, h, p, !hum.Valid, !press.Valid)
	return h, p, ok
}
