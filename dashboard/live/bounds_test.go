package live

import (
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/pilake/pilake/dashboard/series"
)

func heapMiB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// bigUpdate is an update of about n silver windows (~100 bytes of JSON each).
func bigUpdate(dev string, i, n int) Update {
	u := Update{Device: dev, CaptureMS: float64(i), Silver: series.Empty(), Gold: series.Empty()}
	for w := range n {
		u.Silver.Append(int64(i*n+w)*1000, 21.5+float64(w%7)/10, 40.25, 101325.5)
	}
	return u
}

// TestHubRingBoundedByBytes: issue 16 item 12. Large updates keep the ring
// under its byte bound (counted as evictions), whatever its entry count.
func TestHubRingBoundedByBytes(t *testing.T) {
	heap0 := heapMiB()
	h := NewHub(16384, nil)
	h.SetMaxBytes(8 << 20)
	for i := range 400 { // ~400 × 400 KB of JSON: 160 MB unbounded
		publish(t, h, bigUpdate("dev-a", i+1, 4000))
	}
	if h.Evicted() == 0 {
		t.Fatal("no evictions")
	}
	if got := len(h.Recent("")); got < 1 || got > 40 {
		t.Errorf("%d updates kept", got)
	}
	hm := heapMiB()
	t.Logf("heap %.1f → %.1f MiB after 400 updates of ~400 KB (ring bound 8 MiB); %d kept, %d evicted", heap0, hm, len(h.Recent("")), h.Evicted())
	if hm > heap0+32 {
		t.Errorf("heap %.0f MiB, %.0f before: the byte bound did not hold", hm, heap0)
	}
	// The newest is always there.
	if r := h.Recent(""); r[len(r)-1].CaptureMS != 400 {
		t.Errorf("newest kept is %v", r[len(r)-1].CaptureMS)
	}
}

// TestReplayStreamed: a replay of the whole ring to slow clients is written
// in chunks: four stalled readers do not each hold a copy of the ring.
func TestReplayStreamed(t *testing.T) {
	h := NewHub(16384, nil)
	h.SetMaxBytes(64 << 20)
	for i := range 120 { // ~48 MB of JSON in the ring
		publish(t, h, bigUpdate("dev-a", i+1, 4000))
	}
	base := newServer(t, h, RealClock)
	heap0 := heapMiB()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 4 {
		// A client with a tiny receive buffer that reads a little and stalls.
		d := &net.Dialer{Control: nil}
		tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(4096)
			}
			return c, err
		}}
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/live?after=1", nil)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if _, err := io.ReadFull(resp.Body, make([]byte, 1024)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond) // let the server fill the sockets and block
	hm := heapMiB()
	t.Logf("heap %.1f → %.1f MiB with 4 stalled replays of a ~48 MB ring", heap0, hm)
	if hm > heap0+24 {
		t.Errorf("heap %.0f MiB with 4 stalled replays, %.0f before (a buffered replay is ~48 MB each)", hm, heap0)
	}
}
