package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// sseStats counts what the Go SSE clients received.
type sseStats struct {
	start     time.Time
	streaming atomic.Int64
	messages  atomic.Int64
	mu        sync.Mutex
	lat       []float64 // a sample: pipeline to this client, ms
}

func (s *sseStats) p99() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return pct(s.lat, 99)
}

// startSSEClients opens c.sseClients streams of /api/live (all devices, as
// the page's default view) and reads them until ctx ends, as that many
// browsers would; every 100th client records its latency too.
func startSSEClients(ctx context.Context, c config, st *sseStats) error {
	tr := &http.Transport{MaxIdleConnsPerHost: c.sseClients, DisableCompression: true}
	client := &http.Client{Transport: tr}
	st.start = time.Now()
	url := strings.TrimSuffix(c.dashboard, "/") + "/api/live?device=all"
	for i := range c.sseClients {
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("opening live stream %d: %w", i, err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return fmt.Errorf("opening live stream %d: %s (raise the dashboard's --max-live-clients?)", i, resp.Status)
		}
		st.streaming.Add(1)
		go func() {
			defer resp.Body.Close()
			defer st.streaming.Add(-1)
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 16<<20)
			live := false
			for sc.Scan() {
				line := sc.Bytes()
				switch {
				case bytes.HasPrefix(line, []byte("event: ")):
					live = string(line[7:]) == "live"
				case live && bytes.HasPrefix(line, []byte("data: ")):
					st.messages.Add(1)
					if i%100 != 0 {
						continue
					}
					now := float64(time.Now().UnixMicro()) / 1000
					var m struct {
						Updates []struct {
							CaptureMS float64 `json:"capture_ms"`
						} `json:"updates"`
					}
					if json.Unmarshal(line[6:], &m) == nil {
						st.mu.Lock()
						for _, u := range m.Updates {
							st.lat = append(st.lat, now-u.CaptureMS)
						}
						st.mu.Unlock()
					}
				}
			}
		}()
	}
	return nil
}
