package history

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/dashboard/series"
)

// Source serves history.
type Source interface {
	// Devices returns the device ids that have data, sorted.
	Devices(ctx context.Context) ([]string, error)
	// Series returns each matching device's silver and gold points in
	// [q.FromMS, q.ToMS), sorted by time and decimated to q.MaxPoints.
	Series(ctx context.Context, q Query) ([]series.Series, error)
}

// Query selects history.
type Query struct {
	Device       string // "" for all devices
	FromMS, ToMS int64  // unix milliseconds, [From, To)
	MaxPoints    int    // per series; 0 for no limit
}

// ErrBadQuery is wrapped by ParseQuery's errors.
var ErrBadQuery = errors.New("bad query")

// Ranges are the named ranges the page offers.
var Ranges = map[string]time.Duration{
	"1m":  time.Minute,
	"15m": 15 * time.Minute,
	"1h":  time.Hour,
	"24h": 24 * time.Hour,
}

// MinPoints is the fewest points per series a query may ask for.
const MinPoints = 16

// MaxSpan is the longest range a query may ask for.
const MaxSpan = 31 * 24 * time.Hour

// ParseQuery reads device=ID|all and range=1m|15m|1h|24h, or from=&to= in
// unix milliseconds, and points= (per series, at most maxPoints), from a
// request's query string. now is the current time;
// a missing range means 15m.
func ParseQuery(v url.Values, now time.Time, maxPoints int) (Query, error) {
	q := Query{MaxPoints: maxPoints}
	if p := v.Get("points"); p != "" {
		// The page asks for about one point per pixel of its charts' width:
		// what a card can draw, and no more.
		n, err := strconv.Atoi(p)
		if err != nil || n < MinPoints {
			return q, fmt.Errorf("%w: points must be a whole number ≥ %d", ErrBadQuery, MinPoints)
		}
		if maxPoints <= 0 || n < maxPoints {
			q.MaxPoints = n
		}
	}
	switch d := v.Get("device"); {
	case d == "" || d == "all":
	case wire.ValidDeviceID(d):
		q.Device = d
	default:
		return q, fmt.Errorf("%w: device %q is not a valid device id", ErrBadQuery, d)
	}
	from, to := v.Get("from"), v.Get("to")
	if from != "" || to != "" {
		if v.Get("range") != "" {
			return q, fmt.Errorf("%w: give range or from/to, not both", ErrBadQuery)
		}
		f, err1 := strconv.ParseInt(from, 10, 64)
		t, err2 := strconv.ParseInt(to, 10, 64)
		if to == "" {
			t, err2 = now.UnixMilli()+1, nil
		}
		if err1 != nil || err2 != nil {
			return q, fmt.Errorf("%w: from and to must be unix milliseconds", ErrBadQuery)
		}
		if t <= f {
			return q, fmt.Errorf("%w: to must be after from", ErrBadQuery)
		}
		// f ≥ 0 first: then t-f cannot overflow, and the span is compared
		// in milliseconds (converting it to a Duration overflowed for
		// to=18446744073710 and let any span through).
		if f < 0 || t-f > MaxSpan.Milliseconds() {
			return q, fmt.Errorf("%w: range longer than %v", ErrBadQuery, MaxSpan)
		}
		q.FromMS, q.ToMS = f, t
		return q, nil
	}
	r := v.Get("range")
	if r == "" {
		r = "15m"
	}
	d, ok := Ranges[r]
	if !ok {
		return q, fmt.Errorf("%w: range %q (want 1m, 15m, 1h, 24h, or from/to)", ErrBadQuery, r)
	}
	q.ToMS = now.UnixMilli() + 1
	q.FromMS = q.ToMS - d.Milliseconds()
	return q, nil
}

// finish sorts, decimates and normalises the series of one device.
func finish(s *series.Series, q Query) {
	s.Silver.Sort()
	s.Gold.Sort()
	s.Silver = series.Decimate(s.Silver, q.FromMS, q.ToMS, q.MaxPoints)
	s.Gold = series.Decimate(s.Gold, q.FromMS, q.ToMS, q.MaxPoints)
	s.Silver.Normalize()
	s.Gold.Normalize()
}
