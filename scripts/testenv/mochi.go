package testenv

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// MochiConfig configures an in-process broker for a test.
type MochiConfig struct {
	// Addr is the listen address; "" picks a free loopback port.
	Addr string
	// TLS, when set, makes the listener speak TLS.
	TLS *tls.Config
	// Hooks are added in order; none means auth.AllowHook (every client may
	// connect, publish and subscribe — loopback tests only).
	Hooks []mochi.Hook
	// InlineClient enables the server's in-process client (Server.Publish).
	InlineClient bool
	// AnnouncePuback makes the broker behave as the collector's embedded
	// broker towards agents in ack mode "auto": a subscription to a landing
	// ack topic is answered with {"v":1,"mode":"puback"} (see
	// collector/broker.AnnounceHook, which this copies to stay import-free).
	AnnouncePuback bool
}

type announceHook struct {
	mochi.HookBase
	srv *mochi.Server
}

func (h *announceHook) ID() string           { return "testenv-announce" }
func (h *announceHook) Provides(b byte) bool { return b == mochi.OnSubscribed }
func (h *announceHook) OnSubscribed(_ *mochi.Client, pk packets.Packet, _ []byte) {
	for _, f := range pk.Filters {
		if strings.HasPrefix(f.Filter, "pilake/v1/ack/") {
			_ = h.srv.Publish(f.Filter, []byte(`{"v":1,"mode":"puback"}`), false, 1)
		}
	}
}

// Mochi runs an in-process mochi broker — the one the collector embeds —
// with its capability limits raised so it never drops messages under load
// (mochi's defaults do; see FACTS.md). It returns the server, its URL
// (tcp://host:port) and a stop function, also called when the test ends;
// stopping twice is fine, and a test may start a new broker on the same
// Addr after stopping one, to simulate an outage.
func Mochi(t testing.TB, cfg MochiConfig) (s *mochi.Server, url string, stop func()) {
	t.Helper()
	addr := cfg.Addr
	if addr == "" {
		addr = FreeAddr(t)
	}
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = 1 << 20
	caps.MaximumInflight = 65535
	s = mochi.New(&mochi.Options{
		Capabilities: caps,
		InlineClient: cfg.InlineClient || cfg.AnnouncePuback,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	hooks := cfg.Hooks
	if len(hooks) == 0 {
		hooks = []mochi.Hook{new(auth.AllowHook)}
	}
	if cfg.AnnouncePuback {
		hooks = append(hooks[:len(hooks):len(hooks)], &announceHook{srv: s})
	}
	for _, h := range hooks {
		if err := s.AddHook(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr, TLSConfig: cfg.TLS})); err != nil {
		t.Fatalf("broker listening on %s: %v", addr, err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { _ = s.Close() }) }
	t.Cleanup(stop)
	return s, "tcp://" + addr, stop
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		// The kernel may give a port just closed to the next caller: two
		// calls in a row (a broker's and a metrics address) once returned
		// the same port. Never hand out one address twice in a process.
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr
		}
	}
}

// handedOut is every address FreeAddr returned in this process.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}
