package sample

import (
	"math"
	"math/bits"
	"sync"
	"time"
)

// Hist is a fixed-size, allocation-free histogram of durations with ~3 %
// resolution from 1 µs to ~70 min, for lateness quantiles. Safe for
// concurrent use.
type Hist struct {
	mu     sync.Mutex
	counts [histBuckets]uint64
	n      uint64
	sum    time.Duration
	max    time.Duration
}

// 32 sub-buckets per power of two of microseconds.
const (
	histSub     = 32
	histBuckets = 33 * histSub
)

func histIndex(us uint64) int {
	if us < histSub {
		return int(us)
	}
	e := bits.Len64(us) - 1 // us in [2^e, 2^(e+1))
	sub := (us >> (e - 5)) & (histSub - 1)
	i := (e-4)*histSub + int(sub)
	return min(i, histBuckets-1)
}

// histUpper returns the upper bound (µs) of bucket i.
func histUpper(i int) float64 {
	if i < histSub {
		return float64(i)
	}
	e := i/histSub + 4
	sub := i % histSub
	return float64(uint64(histSub+sub+1) << (e - 5))
}

// Observe records d (negative counts as 0).
func (h *Hist) Observe(d time.Duration) {
	us := uint64(0)
	if d > 0 {
		us = uint64(d / time.Microsecond)
	}
	h.mu.Lock()
	h.counts[histIndex(us)]++
	h.n++
	h.sum += max(d, 0)
	h.max = max(h.max, d)
	h.mu.Unlock()
}

// Quantile returns the q-quantile (0..1) in µs, as the upper bound of the
// bucket holding it; 0 when empty.
func (h *Hist) Quantile(q float64) float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var c uint64
	for i, k := range h.counts {
		c += k
		if c >= rank {
			return histUpper(i)
		}
	}
	return float64(h.max / time.Microsecond)
}

// Count returns the number of observations.
func (h *Hist) Count() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// Max returns the largest observation.
func (h *Hist) Max() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.max
}

// CountAtMost returns how many observations were at most us microseconds,
// counting the buckets whose values are all ≤ us (so up to one bucket, ~3 %,
// short), for exporting the histogram with fixed bounds.
func (h *Hist) CountAtMost(us float64) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var c uint64
	for i, k := range h.counts {
		maxVal := histUpper(i) // bucket i < histSub holds exactly i µs
		if i >= histSub {
			maxVal-- // the others hold [lower, upper)
		}
		if maxVal > us {
			break
		}
		c += k
	}
	return c
}

// Sum returns the total of all observations (negative ones as 0).
func (h *Hist) Sum() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sum
}
