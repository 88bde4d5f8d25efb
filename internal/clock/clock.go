// Package clock is the one small time interface the agent, the collector
// and the dashboard share: code that tells the time or waits takes a Clock,
// the programs pass Real, and tests pass a Fake they move by hand (or a
// virtual clock of their own), so a timeout path runs in microseconds and
// deterministically.
package clock

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Clock tells the time and waits.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives the time once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// SleepUntil sleeps to t precisely (the sampler's 2.5 ms periods): waits up
// to 20 ms use preciseSleep (not interruptible: ctx is checked when it
// returns); longer ones a timer that ctx can interrupt, then preciseSleep
// for the last 2 ms.
func (realClock) SleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d > 20*time.Millisecond {
		timer := time.NewTimer(d - 2*time.Millisecond)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
		d = time.Until(t)
	}
	if d > 0 {
		preciseSleep(d)
	}
	return ctx.Err()
}

// Real is the system clock.
var Real Clock = realClock{}

// SleepUntil returns once c shows t, or when ctx ends (with ctx's error).
// A Clock with a SleepUntil method of its own is asked to (Real sleeps
// precisely; a virtual clock can jump to t); any other waits on c.After.
func SleepUntil(ctx context.Context, c Clock, t time.Time) error {
	if s, ok := c.(interface {
		SleepUntil(context.Context, time.Time) error
	}); ok {
		return s.SleepUntil(ctx, t)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-c.After(t.Sub(c.Now())):
		return ctx.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Fake is a Clock that moves only when told (Advance). Safe for concurrent
// use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	c  chan time.Time
}

// NewFake returns a Fake showing t.
func NewFake(t time.Time) *Fake { return &Fake{now: t} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After returns a channel that receives the fake time once Advance has
// moved it d past now (at once if d <= 0).
func (f *Fake) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := make(chan time.Time, 1)
	if d <= 0 {
		c <- f.now
		return c
	}
	f.waiters = append(f.waiters, waiter{at: f.now.Add(d), c: c})
	return c
}

// Advance moves the time d forward and fires every wait that is due, in
// order.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	sort.SliceStable(f.waiters, func(i, j int) bool { return f.waiters[i].at.Before(f.waiters[j].at) })
	n := 0
	for _, w := range f.waiters {
		if w.at.After(f.now) {
			f.waiters[n] = w
			n++
			continue
		}
		w.c <- f.now
	}
	f.waiters = f.waiters[:n]
}

// Waiters returns how many After calls wait for the time to move: a test
// advances once the code under test is waiting.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}
