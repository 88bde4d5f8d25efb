package live

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/internal/clock"
)

// Clock is the time source of the SSE handler; tests replace it. It is
// internal/clock's, shared with the agent and the collector.
type Clock = clock.Clock

// RealClock is the wall clock.
var RealClock Clock = clock.Real

// SSE serves the live feed as Server-Sent Events:
//
//	GET /api/live[?device=ID][&after=SEQ]   (or the Last-Event-ID header)
//
// Events: "status" (Status JSON) on connect and on every upstream change;
// "live" ({"updates":[Update…]}, id = newest SEQ included) at most once per
// Interval; "reset" (id = SEQ) when updates the client asked for are no longer
// in the ring, so it must reload history. A comment line is sent every
// Heartbeat to keep proxies from closing an idle stream.
type SSE struct {
	Hub *Hub
	// Interval is the least time between two "live" messages to one client
	// (default 100 ms: at most 10 chart updates per second).
	Interval time.Duration
	// Gather is how long the feed must be quiet (no new update) before
	// pending updates go out, once Interval has passed since the last
	// message: a burst (e.g. agents whose batches end together) goes out as
	// one message right after its last update, instead of its first update
	// now and the rest an Interval later. The wait never holds an update
	// more than Interval after it arrived (a steady stream goes out every
	// Interval). Zero means 5 ms; negative means none (leading edge: an
	// update goes out at once when the last message is Interval old).
	// See throttle.
	Gather time.Duration
	// Heartbeat is the idle time after which a comment is sent (default 15 s).
	Heartbeat time.Duration
	// WriteTimeout bounds each write; a client that cannot take a message in
	// this time is disconnected (default 10 s).
	WriteTimeout time.Duration
	// MaxClients bounds concurrent streams; more get 503 (default 1000).
	MaxClients int
	Clock      Clock
	Logger     *slog.Logger

	clients atomic.Int64
	// arrived, if set, is called after a stream notes an update arriving
	// while it holds updates back (tests synchronise with it).
	arrived func()
}

var _ http.Handler = (*SSE)(nil)

// replayChunk is the most a live stream buffers before writing: a replay
// of the whole ring goes out in pieces of about this size.
const replayChunk = 256 << 10

// ServeHTTP streams events until the client goes away.
func (s *SSE) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	interval, heartbeat, writeTimeout, gather := s.Interval, s.Heartbeat, s.WriteTimeout, s.Gather
	if gather == 0 {
		gather = 5 * time.Millisecond
	}
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	if heartbeat <= 0 {
		heartbeat = 15 * time.Second
	}
	if writeTimeout <= 0 {
		writeTimeout = 10 * time.Second
	}
	clock := s.Clock
	if clock == nil {
		clock = RealClock
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	device := r.URL.Query().Get("device")
	if device == "all" {
		device = ""
	}
	if device != "" && !wire.ValidDeviceID(device) {
		http.Error(w, "bad device id", http.StatusBadRequest)
		return
	}
	after, resume, err := startPoint(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}

	maxClients := s.MaxClients
	if maxClients <= 0 {
		maxClients = 1000
	}
	if n := s.clients.Add(1); n > int64(maxClients) {
		s.clients.Add(-1)
		w.Header().Set("Retry-After", "10")
		http.Error(w, "too many live clients", http.StatusServiceUnavailable)
		return
	}
	defer s.clients.Add(-1)

	sig, unsubscribe := s.Hub.Subscribe()
	defer unsubscribe()
	if !resume {
		after = s.Hub.Seq()
	}

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	var buf bytes.Buffer
	// write sends what buf holds; flush also pushes it out of the server's
	// buffers. A replay is written in chunks of about replayChunk, so a
	// client costs that much at most, not the whole ring.
	write := func(flush bool) bool {
		if buf.Len() == 0 {
			return true
		}
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout)) // a network deadline: wall clock
		_, err := w.Write(buf.Bytes())
		if buf.Cap() > 2*replayChunk {
			buf = bytes.Buffer{} // do not keep a large buffer per client
		} else {
			buf.Reset()
		}
		if err == nil && flush {
			err = rc.Flush()
		}
		if err != nil {
			log.Debug("live client gone", "remote", r.RemoteAddr, "err", err)
			return false
		}
		return true
	}
	send := func() bool { return write(true) }

	buf.WriteString("retry: 2000\n\n")
	var lastStatus Status
	var entries []Entry
	th := throttle{interval: interval, quiet: max(gather, 0)}
	ctx := r.Context()
	for {
		st := s.Hub.Status()
		if st.Live != lastStatus.Live || st.Detail != lastStatus.Detail || st.Source != lastStatus.Source {
			lastStatus = st
			data, _ := json.Marshal(st)
			fmt.Fprintf(&buf, "event: status\ndata: %s\n\n", data)
		}
		var newest uint64
		var gap bool
		entries, newest, gap = s.Hub.Since(after, device, entries[:0])
		if gap {
			fmt.Fprintf(&buf, "id: %d\nevent: reset\ndata: {\"reason\":\"updates after %d are no longer buffered\"}\n\n", newest, after)
			entries = entries[:0] // the reload covers them
		}
		if len(entries) > 0 {
			fmt.Fprintf(&buf, "id: %d\nevent: live\ndata: {\"updates\":[", entries[len(entries)-1].Seq)
			for i, e := range entries {
				if i > 0 {
					buf.WriteByte(',')
				}
				buf.Write(e.JSON)
				if buf.Len() >= replayChunk && !write(false) {
					return
				}
			}
			buf.WriteString("]}\n\n")
			th.sent(clock.Now())
		}
		after = newest
		if !send() {
			return
		}

		select {
		case <-ctx.Done():
			return
		case <-sig:
		case <-clock.After(heartbeat):
			buf.WriteString(": ping\n\n")
			continue
		}
		// Coalesce: hold what arrives until the throttle says it is due,
		// noting each further arrival (a burst goes out after its end).
		// One timer at a time: an arrival only moves the due time later (or
		// not at all), so it is looked at again when the timer fires; a
		// burst of updates then arms a few timers per stream, not one per
		// update in every stream.
		th.arrive(clock.Now())
		var timer <-chan time.Time
		var timerAt time.Time
		for {
			due := th.due()
			wait := due.Sub(clock.Now())
			if wait <= 0 {
				break
			}
			if timer == nil || due.Before(timerAt) {
				timer, timerAt = clock.After(wait), due
			}
			select {
			case <-ctx.Done():
				return
			case <-sig:
				th.arrive(clock.Now())
				if s.arrived != nil {
					s.arrived()
				}
			case <-timer:
				timer = nil
			}
		}
	}
}

// throttle decides when a stream's pending updates go out: at most one
// message per interval, and within that, as soon as the feed has been quiet
// for quiet after the newest pending update, but never later than interval
// after the first one arrived. So:
//   - a lone update (one device's chart: one update a second) goes out
//     quiet after it arrives;
//   - a burst (many devices' updates within a few milliseconds) goes out
//     as one message, quiet after its last update;
//   - a steady stream (100 devices at random phases: an update every
//     10 ms) goes out every interval, each message with what arrived since
//     the last, so an update waits up to interval: with arrivals spread
//     evenly no schedule of one message per interval does better.
type throttle struct {
	interval, quiet time.Duration
	last            time.Time // the last message (zero: none yet)
	first, newest   time.Time // arrivals of the pending updates (zero: none)
}

// arrive notes an update arriving at now.
func (t *throttle) arrive(now time.Time) {
	if t.first.IsZero() {
		t.first = now
	}
	t.newest = now
}

// due returns when the pending updates go out (with none pending: the
// earliest time a message may go out).
func (t *throttle) due() time.Time {
	d := t.newest.Add(t.quiet)
	if c := t.first.Add(t.interval); c.Before(d) {
		d = c
	}
	if !t.last.IsZero() {
		if e := t.last.Add(t.interval); e.After(d) {
			d = e
		}
	}
	return d
}

// sent notes a message going out at now with every pending update.
func (t *throttle) sent(now time.Time) {
	t.last = now
	t.first, t.newest = time.Time{}, time.Time{}
}

// startPoint reads where a client resumes: the Last-Event-ID header (sent by
// a reconnecting EventSource) or else the "after" query parameter (the
// sequence number the history response carried).
func startPoint(r *http.Request) (after uint64, resume bool, err error) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("after")
	}
	if v == "" {
		return 0, false, nil
	}
	after, err = strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("bad Last-Event-ID or after %q: want a sequence number", v)
	}
	return after, true, nil
}
