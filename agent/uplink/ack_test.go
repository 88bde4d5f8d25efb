package uplink

import (
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/pilake/pilake/agent/spool"
	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/internal/testwait"
)

// fakeCollector stands for a collector behind an external broker: it sees
// the batches the broker delivers ("t/" topics, the payload's first 8 bytes
// are the seq, boot 1), loses the first delivery of the seqs in lose (as a
// broker that restarted without persistence would), and acknowledges the
// others as landed on the device's ack topic.
type fakeCollector struct {
	mochi.HookBase
	srv    *mochi.Server
	device string
	mu     sync.Mutex
	lose   map[uint64]bool
	landed map[uint64]int
	order  []uint64
	mute   bool // land, but send no acks
}

func (c *fakeCollector) ID() string           { return "fake-collector" }
func (c *fakeCollector) Provides(b byte) bool { return b == mochi.OnPublished }
func (c *fakeCollector) OnPublished(_ *mochi.Client, pk packets.Packet) {
	if !strings.HasPrefix(pk.TopicName, "t/") {
		return
	}
	seq := binary.LittleEndian.Uint64(pk.Payload)
	c.mu.Lock()
	if c.lose[seq] {
		delete(c.lose, seq)
		c.mu.Unlock()
		return
	}
	c.landed[seq]++
	c.order = append(c.order, seq)
	mute := c.mute
	c.mu.Unlock()
	if mute {
		return
	}
	ack := wire.EncodeAck(nil, &wire.Ack{Boot: 1, Landed: [][2]uint64{{seq, seq}}})
	go func() { _ = c.srv.Publish(wire.AckTopic(c.device), ack, false, 1) }()
}

func (c *fakeCollector) snapshot() map[uint64]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[uint64]int{}
	for k, v := range c.landed {
		m[k] = v
	}
	return m
}

func ackedConn(t *testing.T, addr, device string, f **Forwarder) *MQTT {
	t.Helper()
	conn, err := NewMQTT(Options{Broker: "tcp://" + addr, ClientID: device, Logger: quiet, MaxReconnectInterval: time.Second,
		AckTopic: wire.AckTopic(device), OnAck: func(p []byte) { (*f).HandleAck(p) }})
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// TestLandedModeResendsWhatTheBrokerLost: in AckLanded mode a batch the
// broker PUBACKed but never delivered stays in the spool and is sent again
// after the landing timeout; every batch ends up landed, the spool empty,
// and each counted once.
func TestLandedModeResendsWhatTheBrokerLost(t *testing.T) {
	const device = "dev-landed"
	fc := &fakeCollector{device: device, lose: map[uint64]bool{2: true, 5: true, 6: true}, landed: map[uint64]int{}}
	srv, addr := brokerServer(t, new(auth.AllowHook), fc)
	fc.srv = srv
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	var f *Forwarder
	conn := ackedConn(t, addr, device, &f)
	var mu sync.Mutex
	onAck := map[uint64]int{}
	f, err = NewForwarder(ForwarderConfig{Spool: sp, Pub: conn, MaxInflight: 4, BacklogRate: 1000, Logger: quiet,
		AckMode: AckLanded, LandingTimeout: 200 * time.Millisecond,
		Topic: func(*spool.Record) string { return "t/x" },
		OnAck: func(r *spool.Record) { mu.Lock(); onAck[r.Seq]++; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	conn.Start(t.Context())
	t.Cleanup(func() { conn.Close(time.Second) })
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(t.Context()) }()
	t.Cleanup(func() { <-done })
	for seq := uint64(1); seq <= 10; seq++ {
		if _, err := sp.Append(1, seq, 10, payload(seq)); err != nil {
			t.Fatal(err)
		}
	}
	waitEmpty(t, f)
	got := fc.snapshot()
	for seq := uint64(1); seq <= 10; seq++ {
		if got[seq] < 1 {
			t.Fatalf("batch %d never landed: %v", seq, got)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for seq := uint64(1); seq <= 10; seq++ {
		if onAck[seq] != 1 {
			t.Fatalf("OnAck counts %v, want each seq once", onAck)
		}
	}
	c := f.Counters()
	if c.Acked != 10 || c.AckedReadings != 100 || c.Resent < 3 || c.PubackMeansLanded {
		t.Fatalf("counters %+v: want 10 acked, 100 readings, >= 3 resent", c)
	}
}

// TestLandedModeWindow: with no landing acks, at most MaxUnlanded batches
// are out; the rest wait in the spool, and none is deleted.
func TestLandedModeWindow(t *testing.T) {
	const device = "dev-window"
	fc := &fakeCollector{device: device, landed: map[uint64]int{}, mute: true}
	srv, addr := brokerServer(t, new(auth.AllowHook), fc)
	fc.srv = srv
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	var f *Forwarder
	conn := ackedConn(t, addr, device, &f)
	f, err = NewForwarder(ForwarderConfig{Spool: sp, Pub: conn, MaxInflight: 4, BacklogRate: 1000, Logger: quiet,
		AckMode: AckLanded, LandingTimeout: time.Hour, MaxUnlanded: 5,
		Topic: func(*spool.Record) string { return "t/x" }})
	if err != nil {
		t.Fatal(err)
	}
	conn.Start(t.Context())
	t.Cleanup(func() { conn.Close(time.Second) })
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(t.Context()) }()
	t.Cleanup(func() { <-done })
	for seq := uint64(1); seq <= 20; seq++ {
		if _, err := sp.Append(1, seq, 10, payload(seq)); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Until(t, "5 batches delivered", func() bool { return len(fc.snapshot()) >= 5 })
	time.Sleep(200 * time.Millisecond) // would a sixth go out?
	if n := len(fc.snapshot()); n != 5 {
		t.Fatalf("%d batches delivered with no landing ack, want the window of 5", n)
	}
	if st := sp.Stats(); st.Records != 20 {
		t.Fatalf("spool holds %d batches, want all 20 (none acknowledged as landed)", st.Records)
	}
	// Now the collector acknowledges 1..5 in one ack: the next five go.
	_ = srv.Publish(wire.AckTopic(device), wire.EncodeAck(nil, &wire.Ack{Boot: 1, Landed: [][2]uint64{{1, 5}}}), false, 1)
	testwait.Until(t, "10 batches delivered", func() bool { return len(fc.snapshot()) >= 10 })
	if n, st := len(fc.snapshot()), sp.Stats(); n != 10 || st.Records != 15 {
		t.Fatalf("after acking 1-5: %d delivered, %d spooled; want 10 and 15", n, st.Records)
	}
}

// TestAutoModeTrustsAnAnnouncedPuback: in AckAuto mode, once the broker
// announces that its PUBACK means landed, PUBACKs empty the spool with no
// landing acks.
func TestAutoModeTrustsAnAnnouncedPuback(t *testing.T) {
	const device = "dev-auto"
	fc := &fakeCollector{device: device, landed: map[uint64]int{}, mute: true}
	srv, addr := brokerServer(t, new(auth.AllowHook), fc)
	fc.srv = srv
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	var f *Forwarder
	conn := ackedConn(t, addr, device, &f)
	f, err = NewForwarder(ForwarderConfig{Spool: sp, Pub: conn, MaxInflight: 4, BacklogRate: 1000, Logger: quiet,
		AckMode: AckAuto, LandingTimeout: time.Hour, Topic: func(*spool.Record) string { return "t/x" }})
	if err != nil {
		t.Fatal(err)
	}
	conn.Start(t.Context())
	t.Cleanup(func() { conn.Close(time.Second) })
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(t.Context()) }()
	t.Cleanup(func() { <-done })
	for seq := uint64(1); seq <= 8; seq++ {
		if _, err := sp.Append(1, seq, 10, payload(seq)); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Until(t, "8 batches delivered", func() bool { return len(fc.snapshot()) >= 8 })
	if st := sp.Stats(); st.Records != 8 {
		t.Fatalf("before the announcement the spool holds %d, want 8", st.Records)
	}
	_ = srv.Publish(wire.AckTopic(device), wire.EncodeAck(nil, &wire.Ack{Mode: wire.AckModePuback}), false, 1)
	waitEmpty(t, f)
	if c := f.Counters(); c.Acked != 8 || !c.PubackMeansLanded {
		t.Fatalf("counters %+v", c)
	}
}

// TestResendRequest: a batch PUBACKed but lost on the way is sent again at
// once when the collector asks for it (no need to wait for the timeout).
func TestResendRequest(t *testing.T) {
	const device = "dev-resend"
	fc := &fakeCollector{device: device, lose: map[uint64]bool{3: true}, landed: map[uint64]int{}}
	srv, addr := brokerServer(t, new(auth.AllowHook), fc)
	fc.srv = srv
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	var f *Forwarder
	conn := ackedConn(t, addr, device, &f)
	f, err = NewForwarder(ForwarderConfig{Spool: sp, Pub: conn, MaxInflight: 4, BacklogRate: 1000, Logger: quiet,
		AckMode: AckLanded, LandingTimeout: time.Hour, Topic: func(*spool.Record) string { return "t/x" }})
	if err != nil {
		t.Fatal(err)
	}
	conn.Start(t.Context())
	t.Cleanup(func() { conn.Close(time.Second) })
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(t.Context()) }()
	t.Cleanup(func() { <-done })
	for seq := uint64(1); seq <= 5; seq++ {
		if _, err := sp.Append(1, seq, 10, payload(seq)); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Until(t, "every batch but the lost one landed", func() bool { return sp.Stats().Records == 1 })
	if n := sp.Stats().Records; n != 1 {
		t.Fatalf("%d batches unlanded, want only the lost one", n)
	}
	_ = srv.Publish(wire.AckTopic(device), wire.EncodeAck(nil, &wire.Ack{Boot: 1, Resend: [][2]uint64{{3, 4}}}), false, 1)
	waitEmpty(t, f)
	if got := fc.snapshot(); got[3] != 1 || got[4] != 1 {
		t.Fatalf("landed %v: want 3 once (resent on request) and 4 once (landed, not resent)", got)
	}
}

// failEvery drops the client on every telemetry publication, as the
// embedded broker does when the lake refuses every landing.
type failEvery struct{ mochi.HookBase }

func (failEvery) ID() string           { return "fail-every" }
func (failEvery) Provides(b byte) bool { return b == mochi.OnPublish }
func (failEvery) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if strings.HasPrefix(pk.TopicName, "t/") {
		cl.Stop(errors.New("test: landing failed"))
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

// TestFailingLandingBacksOff: a broker that disconnects on every failed
// landing is not stormed: reconnections after short connections back off
// (1 s, 2 s, ...), so in 3.5 s the agent connects a handful of times, not
// thousands (issue 15: 4,990 disconnects in 20 s).
func TestFailingLandingBacksOff(t *testing.T) {
	addr := broker(t, new(auth.AllowHook), &failEvery{})
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	conn, err := NewMQTT(Options{Broker: "tcp://" + addr, ClientID: "dev-storm", Logger: quiet, MaxReconnectInterval: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	conn.Start(t.Context())
	t.Cleanup(func() { conn.Close(time.Second) })
	f := runForwarder(t, sp, conn, 4)
	for seq := uint64(1); seq <= 5; seq++ {
		if _, err := sp.Append(1, seq, 10, payload(seq)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(3500 * time.Millisecond)
	if n := conn.Connects(); n > 4 || n < 2 {
		t.Fatalf("%d connections in 3.5 s, want 2-4 (backoff after each short one)", n)
	}
	if conn.ShortLived() < 1 || f.Counters().Acked != 0 || sp.Stats().Records != 5 {
		t.Fatalf("short-lived %d, counters %+v, spool %+v", conn.ShortLived(), f.Counters(), sp.Stats())
	}
}
