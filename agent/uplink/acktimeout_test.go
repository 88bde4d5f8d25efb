package uplink

import (
	"sync"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/spool"
	"github.com/pilake/pilake/internal/clock"
	"github.com/pilake/pilake/internal/testwait"
)

// silentPub is a connection that is up and never delivers a PUBACK. A fake,
// on purpose: a real broker (Mosquitto, mochi) always acknowledges a QoS 1
// publication it accepted, and the path under test is the forwarder's own
// timer for the PUBACK that never comes.
type silentPub struct {
	mu        sync.Mutex
	published []string
	changed   chan struct{}
}

type silentToken struct{ done chan struct{} }

func (t silentToken) Done() <-chan struct{} { return t.done }
func (t silentToken) Error() error          { return nil }

func (p *silentPub) Publish(topic string, payload []byte) Token {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.published = append(p.published, topic)
	return silentToken{done: make(chan struct{})}
}
func (p *silentPub) State() (bool, uint64)    { return true, 1 }
func (p *silentPub) Changed() <-chan struct{} { return p.changed }
func (p *silentPub) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.published)
}

// TestAckTimeoutResends runs the forwarder on a fake clock against a
// connection that never acknowledges: nothing is sent again until the ack
// timeout has passed on that clock, then the batch is sent again (and it
// stays in the spool).
func TestAckTimeoutResends(t *testing.T) {
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Append(1, 1, 10, payload(1)); err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	pub := &silentPub{changed: make(chan struct{})}
	f, err := NewForwarder(ForwarderConfig{Spool: sp, Pub: pub, AckTimeout: time.Minute, Clock: clk, BacklogRate: 1000, Logger: quiet,
		Topic: func(*spool.Record) string { return "t/x" }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx) }()
	t.Cleanup(func() { <-done })

	testwait.Until(t, "the first publication and its ack timer", func() bool { return pub.count() == 1 && clk.Waiters() == 1 })
	clk.Advance(59 * time.Second)
	if clk.Waiters() != 1 || pub.count() != 1 {
		t.Fatalf("before the timeout: %d timers, %d publications; want 1, 1", clk.Waiters(), pub.count())
	}
	clk.Advance(time.Second) // the ack timeout
	testwait.Until(t, "the batch sent again after the ack timeout", func() bool { return pub.count() == 2 })
	if n := sp.Stats().Records; n != 1 {
		t.Fatalf("spool holds %d batches, want 1 (never acknowledged)", n)
	}
}
