package broker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/broker"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/landing/landingtest"
	"github.com/pilake/pilake/internal/testwait"
)

var quiet = slog.New(slog.DiscardHandler)

func batch(device string, seq uint64, n int) []byte {
	b := &wire.Batch{DeviceID: device, BootID: 0xb007, Seq: seq, IntervalUS: 2500}
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC).UnixMicro() + int64(seq)*int64(n)*2500
	for i := range n {
		b.Readings = append(b.Readings, wire.Reading{TimeUS: t0 + int64(i)*2500, Temp: 2150 + int32(i%7), Press: 101325 * 256, Hum: 45 * 1024})
	}
	data, err := wire.NewEncoder(wire.Binary).Append(nil, b)
	if err != nil {
		panic(err)
	}
	return data
}

func connect(t *testing.T, url, id string) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(false).
		SetAutoReconnect(true).SetConnectRetry(true).SetMaxReconnectInterval(50 * time.Millisecond).
		SetConnectRetryInterval(20 * time.Millisecond).SetOrderMatters(false)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connecting %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func newLanded(t *testing.T, fail func() bool) (*broker.Broker, lake.Lake, *landing.Lander) {
	t.Helper()
	dir := t.TempDir()
	lk, err := lake.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	ld, err := landing.New(landing.Options{Lake: lk, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(t.Context(), broker.Options{Addr: "127.0.0.1:0", TopicPrefix: "pilake/v1/telemetry/", Logger: quiet,
		Handler: func(ctx context.Context, client, topic string, payload []byte) error {
			if fail != nil && fail() {
				return errors.New("injected: lake unavailable")
			}
			dev, _ := wire.DeviceFromTopic(topic)
			_, err := ld.Land(ctx, landing.Message{Data: payload, Source: "mqtt", Topic: topic, Device: dev})
			return err
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, lk, ld
}

// key is the batch key of batch(device, seq, ...).
func key(device string, seq int) string {
	return (&wire.Batch{DeviceID: device, BootID: 0xb007, Seq: uint64(seq)}).Key()
}

// TestAckedMeansLanded: every publish the broker acknowledged is a landing
// file, for several agents publishing concurrently, with nothing lost.
func TestAckedMeansLanded(t *testing.T) {
	b, lk, ld := newLanded(t, nil)
	const devices, per = 8, 40
	var wg sync.WaitGroup
	for d := range devices {
		c := connect(t, b.URL(), fmt.Sprintf("agent-%d", d))
		wg.Add(1)
		go func() {
			defer wg.Done()
			dev := fmt.Sprintf("pi-%d", d)
			toks := make([]paho.Token, 0, per)
			for s := 1; s <= per; s++ {
				toks = append(toks, c.Publish(wire.TelemetryTopic(dev), 1, false, batch(dev, uint64(s), 100)))
			}
			for s, tok := range toks {
				tok.Wait()
				if tok.Error() != nil {
					t.Errorf("%s seq %d: %v", dev, s+1, tok.Error())
					continue
				}
				// Acknowledged: it must be in landing/ now.
				if n := landingtest.Copies(t, lk)[key(dev, s+1)]; n != 1 {
					t.Errorf("acknowledged batch %s landed %d times, want 1", key(dev, s+1), n)
				}
			}
		}()
	}
	wg.Wait()
	if got := ld.Stats().Batches.Load(); got != devices*per {
		t.Fatalf("landed %d batches, want %d", got, devices*per)
	}
}

// TestFailedLandingIsResent: when landing fails the client gets no PUBACK and
// is disconnected; it resends after reconnecting and the batch lands.
func TestFailedLandingIsResent(t *testing.T) {
	var calls atomic.Int32
	b, lk, _ := newLanded(t, func() bool { return calls.Add(1) <= 2 })
	c := connect(t, b.URL(), "agent-resend")
	tok := c.Publish(wire.TelemetryTopic("pi-r"), 1, false, batch("pi-r", 1, 10))
	tok.Wait()
	if tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	// paho v1 completes the original token when it resends after a reconnect
	// (messageIds.claimID), before the PUBACK, so wait for the landing file.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if landingtest.Copies(t, lk)[key("pi-r", 1)] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch not landed after two failed attempts and a resend (handler called %d times)", calls.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if calls.Load() < 3 {
		t.Fatalf("handler called %d times; the first two failed, so want at least 3", calls.Load())
	}
}

// TestLivePublish: the broker's own publishes reach subscribers.
func TestLivePublish(t *testing.T) {
	b, _, _ := newLanded(t, nil)
	c := connect(t, b.URL(), "dashboard")
	got := make(chan string, 1)
	if tok := c.Subscribe(wire.LiveFilter, 0, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if err := b.Publish(wire.LiveTopic("pi-1"), []byte(`{"device":"pi-1"}`), 0); err != nil {
		t.Fatal(err)
	}
	if msg := <-got; msg != `{"device":"pi-1"}` {
		t.Fatalf("got %q", msg)
	}
}

// TestTelemetryDeliveredAfterLanding: a client subscribed to telemetry (a
// second consumer, a debugging mosquitto_sub) receives each batch, landed
// first; without subscribers mochi is told to skip delivery, and the
// batches are still acknowledged and landed.
func TestTelemetryDeliveredAfterLanding(t *testing.T) {
	b, lk, ld := newLanded(t, nil)
	agent := connect(t, b.URL(), "agent-t")
	if tok := agent.Publish(wire.TelemetryTopic("pi-t"), 1, false, batch("pi-t", 1, 10)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publishing with nobody subscribed: %v", tok.Error())
	}
	sub := connect(t, b.URL(), "telemetry-reader")
	got := make(chan []byte, 1)
	if tok := sub.Subscribe(wire.TelemetryFilter, 0, func(_ paho.Client, m paho.Message) { got <- m.Payload() }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	want := batch("pi-t", 2, 10)
	if tok := agent.Publish(wire.TelemetryTopic("pi-t"), 1, false, want); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	select {
	case p := <-got:
		if !bytes.Equal(p, want) {
			t.Fatalf("subscriber got %d bytes, not the batch published", len(p))
		}
	case <-time.After(20 * time.Second): // liveness only
		t.Fatal("subscriber got no telemetry")
	}
	copies := landingtest.Copies(t, lk)
	for seq := 1; seq <= 2; seq++ {
		if n := copies[key("pi-t", seq)]; n != 1 {
			t.Errorf("batch %d landed %d times, want 1", seq, n)
		}
	}
	if len(copies) != 2 || ld.Stats().Batches.Load() != 2 {
		t.Errorf("landed %v (%d counted), want the two batches", copies, ld.Stats().Batches.Load())
	}
}

// TestOversizedPacketRefused: a packet over MaxPacketSize is refused before
// it is read (the client is disconnected); the broker keeps serving others.
func TestOversizedPacketRefused(t *testing.T) {
	b, lk, ld := newLanded(t, nil)
	big := connect(t, b.URL(), "big")
	huge := make([]byte, broker.MaxPacketSize+1)
	tok := big.Publish(wire.TelemetryTopic("pi-big"), 1, false, huge)
	tok.WaitTimeout(2 * time.Second) // never acknowledged; paho keeps it for a resend
	c := connect(t, b.URL(), "normal")
	if tok := c.Publish(wire.TelemetryTopic("pi-n"), 1, false, batch("pi-n", 1, 10)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("normal publish after an oversized one: %v", tok.Error())
	}
	if n := landingtest.Copies(t, lk)[key("pi-n", 1)]; n != 1 {
		t.Fatalf("normal batch landed %d times, want 1", n)
	}
	if got := ld.Stats().Batches.Load(); got != 1 {
		t.Fatalf("landed %d batches, want only the normal one", got)
	}
	if q := ld.Stats().Quarantined("corrupt"); q != 0 {
		t.Fatalf("oversized packet reached landing (%d quarantined)", q)
	}
}

// TestHasSubscribers: the broker knows whether anyone would receive a live
// update, for the dashboard's wildcard subscription, a per-device one and a
// shared one, and forgets a clean session's subscriptions when it leaves.
func TestHasSubscribers(t *testing.T) {
	b, _, _ := newLanded(t, nil)
	live1, live2 := wire.LiveTopic("pi-1"), wire.LiveTopic("pi-2")
	check := func(when string, want1, want2, wantTelemetry bool) {
		t.Helper()
		if got := b.HasSubscribers(live1); got != want1 {
			t.Errorf("%s: HasSubscribers(%s) = %v, want %v", when, live1, got, want1)
		}
		if got := b.HasSubscribers(live2); got != want2 {
			t.Errorf("%s: HasSubscribers(%s) = %v, want %v", when, live2, got, want2)
		}
		if got := b.HasSubscribers(wire.TelemetryTopic("pi-1")); got != wantTelemetry {
			t.Errorf("%s: HasSubscribers(telemetry) = %v, want %v", when, got, wantTelemetry)
		}
	}
	wait := func(tok paho.Token) {
		t.Helper()
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	check("nobody connected", false, false, false)
	c := connect(t, b.URL(), "dashboard")
	nop := func(paho.Client, paho.Message) {}
	for _, tc := range []struct {
		filter              string
		want1, want2, wantT bool
	}{
		{wire.LiveFilter, true, true, false},
		{live2, false, true, false},
		{"$share/dashboards/" + wire.LiveFilter, true, true, false},
		{"pilake/#", true, true, true},
	} {
		wait(c.Subscribe(tc.filter, 0, nop))
		check("subscribed to "+tc.filter, tc.want1, tc.want2, tc.wantT)
		wait(c.Unsubscribe(tc.filter))
		check("unsubscribed from "+tc.filter, false, false, false)
	}

	// A dashboard (clean session) that goes away takes its subscription along.
	o := paho.NewClientOptions().AddBroker(b.URL()).SetClientID("dashboard-clean").SetCleanSession(true)
	d := paho.NewClient(o)
	wait(d.Connect())
	wait(d.Subscribe(wire.LiveFilter, 0, nop))
	check("clean session subscribed", true, true, false)
	d.Disconnect(0)
	// mochi unsubscribes after its read loop ends.
	testwait.Until(t, "the disconnected clean session's subscription to go", func() bool { return !b.HasSubscribers(live1) })
}

// BenchmarkHasSubscribers is what the live publisher pays per batch to learn
// that nobody watches: a lookup in mochi's topic index.
func BenchmarkHasSubscribers(b *testing.B) {
	br, err := broker.New(b.Context(), broker.Options{Addr: "127.0.0.1:0", Logger: quiet,
		Handler: func(context.Context, string, string, []byte) error { return nil }})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	topic := wire.LiveTopic("pi-0042")
	b.ReportAllocs()
	for b.Loop() {
		if br.HasSubscribers(topic) {
			b.Fatal("subscribers")
		}
	}
}

// TestCloseWhileClientsLeave: Close returns while clean-session clients
// are disconnecting. mochi's own Close can deadlock then
// (mochi-mqtt/server#488: listing a listener's clients read-locks twice, and
// a client's removal waiting between the two blocks both forever), which
// hung the collector's shutdown after a benchmark's agents left.
func TestCloseWhileClientsLeave(t *testing.T) {
	for round := range 10 {
		b, err := broker.New(t.Context(), broker.Options{Addr: "127.0.0.1:0", Logger: quiet,
			Handler: func(context.Context, string, string, []byte) error { return nil }})
		if err != nil {
			t.Fatal(err)
		}
		var clients []paho.Client
		for i := range 200 {
			c := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID(fmt.Sprintf("leaver-%d", i)).
				SetCleanSession(true).SetAutoReconnect(false))
			if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("connecting: %v", tok.Error())
			}
			clients = append(clients, c)
		}
		var wg sync.WaitGroup
		for _, c := range clients {
			wg.Go(func() { c.Disconnect(0) })
		}
		closed := make(chan error, 1)
		go func() { closed <- b.Close() }()
		select {
		case <-closed:
		case <-time.After(30 * time.Second): // liveness only
			t.Fatalf("round %d: Close did not return while clients were leaving", round)
		}
		wg.Wait()
	}
}
