package ingest

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/internal/testwait"
)

type published struct {
	topic string
	ack   wire.Ack
}

func capture(t *testing.T) (func(string, []byte) error, func() []published) {
	var mu sync.Mutex
	var got []published
	return func(topic string, p []byte) error {
			a, err := wire.DecodeAck(p)
			if err != nil {
				t.Errorf("published a bad ack %s: %v", p, err)
			}
			mu.Lock()
			got = append(got, published{topic, a})
			mu.Unlock()
			return nil
		}, func() []published {
			mu.Lock()
			defer mu.Unlock()
			return append([]published(nil), got...)
		}
}

func TestAckerFlush(t *testing.T) {
	pub, got := capture(t)
	a := &Acker{Publish: pub}
	for _, s := range []uint64{1, 2, 3, 5, 2} {
		a.Landed("dev-a", 7, s)
	}
	a.Flush()
	a.Flush() // nothing new: nothing sent
	want := []published{{wire.AckTopic("dev-a"), wire.Ack{Boot: 7, Landed: [][2]uint64{{1, 3}, {5, 5}}}}}
	if g := got(); !reflect.DeepEqual(g, want) {
		t.Fatalf("published %+v, want %+v", g, want)
	}
	if a.Sent() != 1 {
		t.Fatalf("sent %d", a.Sent())
	}
}

type gapRounds struct {
	mu     sync.Mutex
	rounds []map[string][][2]uint64
}

func (g *gapRounds) Gaps() map[string][][2]uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.rounds[0]
	if len(g.rounds) > 1 {
		g.rounds = g.rounds[1:]
	}
	return r
}

// TestResendRequests: a gap seen in two rounds in a row is asked for (only
// its part in both); one seen once is not (it may be on its way).
func TestResendRequests(t *testing.T) {
	pub, got := capture(t)
	a := &Acker{Publish: pub}
	src := &gapRounds{rounds: []map[string][][2]uint64{
		{"dev-a/0000000000000007": {{3, 6}}},
		{"dev-a/0000000000000007": {{4, 9}}, "dev-b/0000000000000001": {{1, 1}}},
		{},
	}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); a.RunResendRequests(ctx, src, 5*time.Millisecond) }()
	testwait.Until(t, "a resend request", func() bool { return len(got()) > 0 })
	time.Sleep(30 * time.Millisecond) // would another go out?
	cancel()
	<-done
	want := []published{{wire.AckTopic("dev-a"), wire.Ack{Boot: 7, Resend: [][2]uint64{{4, 6}}}}}
	if g := got(); !reflect.DeepEqual(g, want) {
		t.Fatalf("published %+v, want %+v", g, want)
	}
}
