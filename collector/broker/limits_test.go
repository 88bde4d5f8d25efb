package broker_test

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/broker"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
)

func limitedBroker(t *testing.T, lim broker.Limits) (*broker.Broker, *landing.Lander) {
	t.Helper()
	lk, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ld, err := landing.New(landing.Options{Lake: lk, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(t.Context(), broker.Options{Addr: "127.0.0.1:0", TopicPrefix: "pilake/v1/telemetry/", Logger: quiet, Limits: lim,
		Handler: func(ctx context.Context, device, topic string, payload []byte) error {
			return ld.LandTopic(ctx, device, topic, payload)
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, ld
}

// agentStillLands connects a fresh client and lands one batch.
func agentStillLands(t *testing.T, b *broker.Broker, ld *landing.Lander, dev string, seq uint64) {
	t.Helper()
	n := ld.Stats().Batches.Load()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID(dev).SetConnectTimeout(5 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("an agent cannot connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	if tok := c.Publish(wire.TelemetryTopic(dev), 1, false, batch(dev, seq, 10)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("an agent cannot publish: %v", tok.Error())
	}
	if ld.Stats().Batches.Load() != n+1 {
		t.Fatal("the agent's batch did not land")
	}
}

func heapMiB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// TestConnectionFlood: idle and half-open connections beyond the caps are
// closed at once, those that never CONNECT are closed at the connect
// deadline, and an agent (from another source) still connects and lands.
func TestConnectionFlood(t *testing.T) {
	b, ld := limitedBroker(t, broker.Limits{MaxConnections: 60, MaxConnectionsPerSource: 50, ConnectTimeout: 300 * time.Millisecond})
	heap0 := heapMiB()
	var conns []net.Conn
	for range 200 {
		c, err := net.Dial("tcp", b.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Those beyond the per-source cap are closed at once; the others at
	// the connect deadline (they never send CONNECT). Every read ends.
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("connection %d got data", i)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("connection %d still open after 10 s: no connect deadline", i)
		}
	}
	if n := b.Stats().ConnRefusedSource.Load(); n != 150 {
		t.Errorf("refused per source %d, want 150", n)
	}
	agentStillLands(t, b, ld, "pi-1", 1)
	h := heapMiB()
	t.Logf("heap %.1f → %.1f MiB after 200 connections (150 refused at once, 50 at the connect deadline)", heap0, h)
	if h > heap0+16 {
		t.Errorf("heap %.1f MiB after the flood, %.1f before", h, heap0)
	}
}

// TestTotalConnectionCap: beyond MaxConnections new connections are closed
// and counted; when connections leave, agents connect again.
func TestTotalConnectionCap(t *testing.T) {
	b, ld := limitedBroker(t, broker.Limits{MaxConnections: 5, ConnectTimeout: 5 * time.Second})
	var conns []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", b.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	c, err := net.Dial("tcp", b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("got data")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the sixth connection was not closed")
	}
	c.Close()
	if n := b.Stats().ConnRefusedTotal.Load(); n != 1 {
		t.Errorf("refused total %d, want 1", n)
	}
	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("pi-2").SetConnectTimeout(time.Second))
		if tok := c.Connect(); tok.WaitTimeout(2*time.Second) && tok.Error() == nil {
			c.Disconnect(0)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("slots not given back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	agentStillLands(t, b, ld, "pi-2", 1)
}

// TestRetainedOnlyStatus: retained publications are kept only on status
// topics, small, and up to MaxRetained topics; a flood of large retained
// messages elsewhere leaves nothing retained.
func TestRetainedOnlyStatus(t *testing.T) {
	b, ld := limitedBroker(t, broker.Limits{MaxRetained: 3, MaxRetainedBytes: 64})
	c := connect(t, b.URL(), "flooder")
	heap0 := heapMiB()
	big := make([]byte, 200<<10)
	for i := range 100 {
		c.Publish(fmt.Sprintf("junk/%d", i), 1, true, big).WaitTimeout(10 * time.Second)
	}
	for i := range 10 {
		c.Publish(wire.StatusTopic(fmt.Sprintf("pi-%d", i)), 1, true, []byte("online")).WaitTimeout(10 * time.Second)
	}
	c.Publish(wire.StatusTopic("pi-0"), 1, true, big).WaitTimeout(10 * time.Second)
	if n := b.Stats().RetainRefused.Load(); n != 100+7+1 {
		t.Errorf("retain refused %d, want 108", n)
	}
	got := make(chan string, 200)
	sub := connect(t, b.URL(), "reader")
	sub.Subscribe("#", 0, func(_ paho.Client, m paho.Message) {
		if m.Retained() {
			got <- m.Topic()
		}
	}).WaitTimeout(10 * time.Second)
	time.Sleep(200 * time.Millisecond) // retained messages arrive right after the SUBACK
	if len(got) != 3 {
		t.Errorf("%d retained topics, want 3", len(got))
	}
	agentStillLands(t, b, ld, "pi-3", 1)
	h := heapMiB()
	t.Logf("heap %.1f → %.1f MiB after 100 retained 200 KB publications", heap0, h)
	if h > heap0+16 {
		t.Errorf("heap %.1f MiB after the flood, %.1f before", h, heap0)
	}
}

// TestGhostSessionsBounded: offline persistent sessions subscribed to
// everything hold nothing (the ACL admits only connected clients, so
// nothing is queued for a disconnected one; MaxInflight bounds a slow
// connected one) and expire after SessionExpiry.
func TestGhostSessionsBounded(t *testing.T) {
	ghosts := func(b *broker.Broker) {
		for i := range 5 {
			g := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID(fmt.Sprintf("ghost-%d", i)).SetCleanSession(false))
			if tok := g.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			g.Subscribe("#", 1, nil).WaitTimeout(10 * time.Second)
			g.Disconnect(0)
		}
	}
	b, ld := limitedBroker(t, broker.Limits{MaxInflight: 16, SessionExpiry: time.Hour})
	ghosts(b)
	heap0 := heapMiB()
	c := connect(t, b.URL(), "flooder")
	payload := make([]byte, 32<<10)
	for s := 1; s <= 300; s++ {
		if tok := c.Publish(fmt.Sprintf("ghost/food/%d", s), 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	// Queued for the ghosts as mochi does by default, it is 300 × 32 KB = 9.6 MB.
	h := heapMiB()
	t.Logf("heap %.1f → %.1f MiB after 300 × 32 KB messages with 5 ghost sessions on #", heap0, h)
	if h > heap0+4 {
		t.Errorf("heap %.1f MiB after the messages, %.1f before", h, heap0)
	}
	agentStillLands(t, b, ld, "pi-5", 1)

	// Sessions expire (mochi checks once a second).
	b2, _ := limitedBroker(t, broker.Limits{SessionExpiry: time.Second})
	ghosts(b2)
	deadline := time.Now().Add(10 * time.Second)
	for b2.Clients() > 1 { // the inline client
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions left after their expiry", b2.Clients())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestKeepaliveBounded: a client that asks for no keep-alive (and then
// says nothing) is dropped after 1.5 × MaxKeepalive.
func TestKeepaliveBounded(t *testing.T) {
	b, ld := limitedBroker(t, broker.Limits{MaxKeepalive: 1})
	lost := make(chan error, 1)
	c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("silent").SetKeepAlive(0).
		SetAutoReconnect(false).SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err }))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	select {
	case <-lost:
	case <-time.After(15 * time.Second):
		t.Fatal("a silent client without keep-alive was kept")
	}
	agentStillLands(t, b, ld, "pi-6", 1)
}
