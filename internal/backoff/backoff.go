// Package backoff is pilake's one exponential backoff: the waits between
// attempts of an operation that failed, from Min doubling up to Max,
// optionally jittered. Every retry loop in the repository takes its waits
// from it, so their caps are stated once, where they are configured.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff gives the waits between attempts: Min, 2·Min, 4·Min, … up to
// Max. With Jitter, each wait is drawn uniformly from [d/2, d] instead
// ("equal jitter": retrying clients spread out, none waits less than half).
// The zero Min is 100 ms, the zero Max 10 s. A Backoff is not safe for
// concurrent use.
type Backoff struct {
	Min, Max time.Duration
	Jitter   bool
	n        int // waits given since the last Reset
}

// Next returns the next wait.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 100 * time.Millisecond
	}
	if hi <= 0 {
		hi = 10 * time.Second
	}
	d := lo << min(b.n, 30)
	if d > hi || d <= 0 {
		d = hi
	}
	b.n++
	if b.Jitter {
		d = d/2 + rand.N(d/2+1)
	}
	return d
}

// Reset starts the waits again from Min (after a success).
func (b *Backoff) Reset() { b.n = 0 }

// Wait waits d, or until ctx ends: then it returns ctx.Err().
func Wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
