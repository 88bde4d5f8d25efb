package landing

import (
	"context"
	"sync"
)

// group coalesces durability requests (group commit): a caller joins the
// next round, and one goroutine, alive only while there are waiters, runs
// the rounds one after another. Every write that completed before a caller's
// Sync is covered by the round it waits for, since that round starts later.
type group struct {
	sync func(context.Context) error

	mu      sync.Mutex
	next    *round // collecting waiters; starts when the running round ends
	running bool
}

type round struct {
	done chan struct{}
	err  error
}

// Sync returns once a sync that started after the call has finished.
func (g *group) Sync(ctx context.Context) error {
	g.mu.Lock()
	if g.next == nil {
		g.next = &round{done: make(chan struct{})}
	}
	r := g.next
	if !g.running {
		g.running = true
		go g.lead()
	}
	g.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *group) lead() {
	for {
		g.mu.Lock()
		cur := g.next
		g.next = nil
		if cur == nil {
			g.running = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		// Not any one caller's context: the round serves all of them.
		cur.err = g.sync(context.Background())
		close(cur.done)
	}
}
