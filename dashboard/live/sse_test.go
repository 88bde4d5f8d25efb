package live

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pilake/pilake/dashboard/series"
)

// fakeClock hands out timers the test fires by hand.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	pending []fakeTimer
	changed chan struct{}
}

type fakeTimer struct {
	at time.Time
	d  time.Duration
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_790_000_000, 0), changed: make(chan struct{}, 1)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.pending = append(c.pending, fakeTimer{at: c.now.Add(d), d: d, ch: ch})
	select {
	case c.changed <- struct{}{}:
	default:
	}
	return ch
}

// waitTimer blocks until a timer of duration d is pending.
func (c *fakeClock) waitTimer(t *testing.T, d time.Duration) {
	t.Helper()
	c.waitTimers(t, d, 1)
}

// waitTimers blocks until n timers of duration d are pending.
func (c *fakeClock) waitTimers(t *testing.T, d time.Duration, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		k := 0
		for _, p := range c.pending {
			if p.d == d {
				k++
			}
		}
		if k >= n {
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		select {
		case <-c.changed:
		case <-deadline:
			t.Fatalf("no timer of %v was started", d)
		}
	}
}

// advance moves the clock and fires every timer that is due.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.pending[:0]
	for _, p := range c.pending {
		if !p.at.After(c.now) {
			p.ch <- c.now
		} else {
			keep = append(keep, p)
		}
	}
	c.pending = keep
}

type event struct {
	id, name, data string
}

// stream connects to the SSE endpoint and returns its events.
func stream(t *testing.T, base, query string, header http.Header) <-chan event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/live"+query, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan event, 1000)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 16<<20)
		var e event
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if e.name != "" {
					out <- e
				}
				e = event{}
			case strings.HasPrefix(line, "id: "):
				e.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				e.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				e.data = line[6:]
			}
		}
	}()
	return out
}

// next returns the next event named name, skipping others.
func next(t *testing.T, ch <-chan event, name string) event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended waiting for %q", name)
			}
			if e.name == name {
				return e
			}
		case <-timeout:
			t.Fatalf("no %q event", name)
		}
	}
}

func liveUpdates(t *testing.T, e event) []Update {
	t.Helper()
	var m struct{ Updates []Update }
	if err := json.Unmarshal([]byte(e.data), &m); err != nil {
		t.Fatalf("live event data %q: %v", e.data, err)
	}
	return m.Updates
}

func upd(dev string, i int) Update {
	u := Update{Device: dev, CaptureMS: float64(i), Silver: series.Empty(), Gold: series.Empty()}
	u.Silver.Append(int64(i)*1000, float64(i), 40, 101325)
	return u
}

func publish(t *testing.T, h *Hub, u Update) uint64 {
	t.Helper()
	seq, err := h.Publish(u)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

func newServer(t *testing.T, hub *Hub, clock Clock) string {
	t.Helper()
	return newServerSSE(t, &SSE{Hub: hub, Interval: 100 * time.Millisecond, Gather: 5 * time.Millisecond, Heartbeat: 15 * time.Second, Clock: clock})
}

func newServerSSE(t *testing.T, sse *SSE) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/api/live", sse)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// Updates arriving faster than the interval go out together: 50 updates, 2 messages.
func TestSSECoalesces(t *testing.T) {
	hub := NewHub(1024, nil)
	clock := newFakeClock()
	arrived := make(chan struct{}, 64)
	base := newServerSSE(t, &SSE{Hub: hub, Interval: 100 * time.Millisecond, Gather: 5 * time.Millisecond, Heartbeat: 15 * time.Second, Clock: clock,
		arrived: func() { arrived <- struct{}{} }})
	ev := stream(t, base, "", nil)
	if st := next(t, ev, "status"); !strings.Contains(st.data, `"live":"connecting"`) {
		t.Errorf("first status %s", st.data)
	}
	for hub.Subscribers() == 0 {
		clock.waitTimer(t, 15*time.Second) // the handler is idle, waiting
	}
	// After an idle spell an update waits until the feed has been quiet for
	// Gather, for the rest of its burst.
	publish(t, hub, upd("dev-a", 1))
	clock.waitTimer(t, 5*time.Millisecond)
	publish(t, hub, upd("dev-b", 1))
	<-arrived                           // dev-b seen (no new timer: the due time did not move)
	clock.advance(5 * time.Millisecond) // quiet since dev-b
	m1 := next(t, ev, "live")
	if got := liveUpdates(t, m1); len(got) != 2 || m1.id != "2" {
		t.Fatalf("first message id %s, %d updates; want both of the burst", m1.id, len(got))
	}
	for i := 3; i <= 50; i++ {
		publish(t, hub, upd("dev-a", i))
	}
	clock.waitTimer(t, 100*time.Millisecond) // throttled: the interval has not passed
	clock.advance(100 * time.Millisecond)
	m2 := next(t, ev, "live")
	got := liveUpdates(t, m2)
	if m2.id != "50" || len(got) != 48 || got[0].CaptureMS != 3 || got[47].CaptureMS != 50 {
		t.Fatalf("second message id %s with %d updates, want 48 (3..50) with id 50", m2.id, len(got))
	}
}

func TestSSEResume(t *testing.T) {
	hub := NewHub(4, nil)
	base := newServer(t, hub, RealClock)
	for i := 1; i <= 3; i++ {
		publish(t, hub, upd("dev-a", i))
	}
	t.Run("Last-Event-ID replays what came after", func(t *testing.T) {
		ev := stream(t, base, "", http.Header{"Last-Event-Id": {"1"}})
		m := next(t, ev, "live")
		got := liveUpdates(t, m)
		if m.id != "3" || len(got) != 2 || got[0].CaptureMS != 2 {
			t.Errorf("id %s, updates %+v", m.id, got)
		}
	})
	t.Run("after= from the history response", func(t *testing.T) {
		ev := stream(t, base, "?after=2", nil)
		m := next(t, ev, "live")
		if got := liveUpdates(t, m); m.id != "3" || len(got) != 1 {
			t.Errorf("id %s, %d updates", m.id, len(got))
		}
	})
	t.Run("device filter", func(t *testing.T) {
		publish(t, hub, upd("dev-b", 4))
		ev := stream(t, base, "?device=dev-b&after=0", nil)
		m := next(t, ev, "live")
		if got := liveUpdates(t, m); len(got) != 1 || got[0].Device != "dev-b" || m.id != "4" {
			t.Errorf("id %s, updates %+v", m.id, got)
		}
	})
	t.Run("a gap resets", func(t *testing.T) {
		publish(t, hub, upd("dev-a", 5))
		publish(t, hub, upd("dev-a", 6)) // ring of 4 now holds 3..6
		ev := stream(t, base, "", http.Header{"Last-Event-Id": {"1"}})
		r := next(t, ev, "reset")
		if r.id != "6" {
			t.Errorf("reset id %s, want 6", r.id)
		}
		publish(t, hub, upd("dev-a", 7))
		if m := next(t, ev, "live"); m.id != "7" {
			t.Errorf("after reset got id %s, want 7", m.id)
		}
	})
	t.Run("an id from an earlier process resets", func(t *testing.T) {
		ev := stream(t, base, "", http.Header{"Last-Event-Id": {"99999"}})
		next(t, ev, "reset")
	})
}

func TestSSEBadRequests(t *testing.T) {
	base := newServer(t, NewHub(4, nil), RealClock)
	for _, q := range []string{"?device=../etc", "?after=x", "?device=" + strings.Repeat("a", 200)} {
		resp, err := http.Get(base + "/api/live" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("%s: status %d, want 400", q, resp.StatusCode)
		}
	}
}

func TestSSEStatusChanges(t *testing.T) {
	hub := NewHub(4, nil)
	base := newServer(t, hub, RealClock)
	ev := stream(t, base, "", nil)
	next(t, ev, "status")
	hub.SetStatus("offline", "mqtt tcp://x", "broker connection lost")
	st := next(t, ev, "status")
	var s Status
	if err := json.Unmarshal([]byte(st.data), &s); err != nil || s.Live != "offline" || s.Detail == "" {
		t.Errorf("status %s", st.data)
	}
}

func TestHubRing(t *testing.T) {
	h := NewHub(3, nil)
	if es, seq, gap := h.Since(0, "", nil); len(es) != 0 || seq != 0 || gap {
		t.Errorf("empty hub: %v %d %v", es, seq, gap)
	}
	for i := 1; i <= 5; i++ {
		publish(t, h, upd("d"+strconv.Itoa(i%2), i))
	}
	tests := []struct {
		after   uint64
		device  string
		want    []uint64
		wantGap bool
	}{
		{0, "", []uint64{3, 4, 5}, true},
		{2, "", []uint64{3, 4, 5}, false},
		{4, "", []uint64{5}, false},
		{5, "", nil, false},
		{2, "d1", []uint64{3, 5}, false},
		{9, "", nil, true},
	}
	for _, tc := range tests {
		es, seq, gap := h.Since(tc.after, tc.device, nil)
		var got []uint64
		for _, e := range es {
			got = append(got, e.Seq)
		}
		if seq != 5 || gap != tc.wantGap || len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) {
			t.Errorf("Since(%d, %q) = %v, %d, %v; want %v, 5, %v", tc.after, tc.device, got, seq, gap, tc.want, tc.wantGap)
		}
	}
	if d := h.Devices(); len(d) != 2 || d["d1"] != 5 {
		t.Errorf("devices %v", d)
	}
}

func TestSSEMaxClients(t *testing.T) {
	hub := NewHub(4, nil)
	mux := http.NewServeMux()
	mux.Handle("/api/live", &SSE{Hub: hub, MaxClients: 2})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	for i := 0; i < 2; i++ {
		next(t, stream(t, srv.URL, "", nil), "status")
	}
	resp, err := http.Get(srv.URL + "/api/live")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("third client: status %d, want 503", resp.StatusCode)
	}
}
