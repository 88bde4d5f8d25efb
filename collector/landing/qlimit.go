package landing

import (
	"sync"
	"time"
)

// QuarantineLimit bounds what one source can add to _quarantine/: a token
// bucket of inputs and one of bytes per source (the authenticated device,
// else the transport). Input beyond it is acknowledged and dropped, counted
// in Stats.QuarantineDropped, so garbage cannot fill the lake or make its
// sender resend it forever. Zero fields take the defaults in brackets; a
// negative PerSecond turns the limit off.
type QuarantineLimit struct {
	PerSecond      float64 // inputs a second [20]
	Burst          int     // inputs at once [200]
	BytesPerSecond float64 // bytes a second [1 MiB]
	BurstBytes     int     // bytes at once [16 MiB]
}

func (q QuarantineLimit) withDefaults() QuarantineLimit {
	if q.PerSecond == 0 {
		q.PerSecond = 20
	}
	if q.Burst == 0 {
		q.Burst = 200
	}
	if q.BytesPerSecond == 0 {
		q.BytesPerSecond = 1 << 20
	}
	if q.BurstBytes == 0 {
		q.BurstBytes = 16 << 20
	}
	return q
}

// maxLimitedSources bounds the limiter's map; when full it starts over
// (every source gets a fresh bucket, which only ever lets a burst more in).
const maxLimitedSources = 4096

type bucket struct {
	n, bytes float64
	at       time.Time
}

type qLimiter struct {
	lim QuarantineLimit
	mu  sync.Mutex
	m   map[string]*bucket
}

func newQLimiter(l QuarantineLimit) *qLimiter {
	return &qLimiter{lim: l.withDefaults(), m: map[string]*bucket{}}
}

// allow takes one input of size bytes from source's buckets, if both have room.
func (q *qLimiter) allow(source string, size int, now time.Time) bool {
	if q.lim.PerSecond < 0 {
		return true
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	b := q.m[source]
	if b == nil {
		if len(q.m) >= maxLimitedSources {
			clear(q.m)
		}
		b = &bucket{n: float64(q.lim.Burst), bytes: float64(q.lim.BurstBytes), at: now}
		q.m[source] = b
	}
	if dt := now.Sub(b.at).Seconds(); dt > 0 {
		b.n = min(float64(q.lim.Burst), b.n+dt*q.lim.PerSecond)
		b.bytes = min(float64(q.lim.BurstBytes), b.bytes+dt*q.lim.BytesPerSecond)
		b.at = now
	}
	if b.n < 1 || b.bytes < float64(size) {
		return false
	}
	b.n--
	b.bytes -= float64(size)
	return true
}
