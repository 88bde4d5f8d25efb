package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/pilake/pilake/agent/redact"
	"github.com/pilake/pilake/agent/wire"
)

// Handler lands one message published by a client; it returns nil once the
// message is durable (or deliberately set aside) and may be acknowledged.
// device is the device id the client authenticated as, or "" for an
// anonymous client (loopback without authentication configured); the ACL
// has already checked that topic is that device's telemetry topic. The
// payload is only valid during the call.
type Handler func(ctx context.Context, device, topic string, payload []byte) error

// Options configure a Broker.
type Options struct {
	// Addr is the TCP listen address; default 127.0.0.1:1883. Port 0 picks one.
	Addr string
	// TopicPrefix selects the topics Handler sees (e.g. "pilake/v1/telemetry/").
	// Messages on them are still delivered to subscribers after landing.
	TopicPrefix string
	// Handler lands messages; required.
	Handler Handler
	// Logger defaults to slog.Default(); mochi logs through it at Warn and above.
	Logger *slog.Logger
	// MaxWritesPending bounds each client's queue of outgoing messages
	// (deliveries to subscribers; PUBACKs are written directly) [256].
	// mochi allocates the whole queue per client (8 bytes a slot) and the
	// GC scans it, so with thousands of agents a large value costs real
	// memory and CPU: at 1,024, 5,000 agents' queues were 40 MB of a 185 MB
	// live heap. A subscriber that falls further behind loses messages
	// (live updates are QoS 0, best effort; the dashboard coalesces them
	// anyway): 256 is ~50 ms of updates for 5,000 devices at one batch a
	// second, on top of the socket's buffer.
	MaxWritesPending int
	// TLS, if set, makes the listener TLS 1.2+ (required beyond loopback).
	TLS *TLSOptions
	// Auth says how clients authenticate (required beyond loopback).
	Auth AuthOptions
	// Limits bound connections, sessions and retained messages.
	Limits Limits
}

// Broker is a running embedded MQTT broker.
type Broker struct {
	srv    *mqtt.Server
	ln     net.Listener
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // OnPublish calls in progress
	stats  Stats
	policy *policy
	tls    bool
	// landFailures counts landings that failed (logged at powers of two).
	landFailures atomic.Uint64
}

// MaxPacketSize is the largest MQTT packet the broker accepts: the largest
// batch (wire.MaxEncodedSize) plus room for the topic and headers.
const MaxPacketSize = wire.MaxEncodedSize + 4096

// Errors.
var (
	// ErrNoHandler is returned by New without Options.Handler.
	ErrNoHandler = errors.New("broker: no handler")
	// ErrExposedWithoutAuth is returned by New for an address beyond
	// loopback without client authentication (a fleet key or a client CA)
	// and TLS.
	ErrExposedWithoutAuth = errors.New("broker: listening beyond loopback needs TLS and client authentication (fleet key or client CA)")
)

// Loopback reports whether addr (host:port) only accepts local connections.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// New starts a broker listening on opts.Addr. Message handlers get a
// context derived from ctx (ended by ctx's end or by Close); Close stops the
// broker and waits for its goroutines.
func New(ctx context.Context, opts Options) (*Broker, error) {
	if opts.Handler == nil {
		return nil, ErrNoHandler
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:1883"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	authOn := opts.Auth.enabled(opts.TLS)
	if !Loopback(opts.Addr) && (!authOn || opts.TLS == nil) {
		return nil, ErrExposedWithoutAuth
	}
	if k := opts.Auth.FleetKey; len(k) > 0 && len(k) < MinFleetKeyLen {
		return nil, fmt.Errorf("broker: fleet key of %d bytes: want at least %d", len(k), MinFleetKeyLen)
	}
	var tf *tlsFiles
	if opts.TLS != nil {
		var err error
		if tf, err = newTLSFiles(*opts.TLS, opts.Logger); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	lim := opts.Limits.withDefaults()
	caps := mqtt.NewDefaultServerCapabilities()
	if opts.MaxWritesPending <= 0 {
		opts.MaxWritesPending = 256
	}
	caps.MaximumClientWritesPending = int32(opts.MaxWritesPending)
	// MaximumInflight bounds the QoS 1/2 messages queued for one client
	// (outgoing; an agent's own publications are not queued), offline
	// sessions included; sessions and queued messages expire.
	caps.MaximumInflight = uint16(lim.MaxInflight)
	caps.ReceiveMaximum = 65535
	caps.MaximumMessageExpiryInterval = int64(lim.MessageExpiry / time.Second)
	caps.MaximumSessionExpiryInterval = uint32(lim.SessionExpiry / time.Second)
	// A batch is at most wire.MaxEncodedSize; refuse bigger packets before
	// mochi allocates them (an untrusted client could announce 256 MB).
	caps.MaximumPacketSize = uint32(lim.MaxPacketSize)
	mochiLog := opts.Logger.With(slog.String("component", "mochi"))
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		InlineClient: true,
		Logger:       slog.New(levelFloor{mochiLog.Handler(), slog.LevelWarn}),
		// A binary batch is ~1 KB: a few per read, whose PUBACKs ackConn
		// sends together. Small buffers keep 5,000 clients cheap.
		ClientNetReadBufferSize:  4 * 1024,
		ClientNetWriteBufferSize: 2 * 1024,
	})
	ctx, cancel := context.WithCancel(ctx)
	b := &Broker{srv: srv, log: opts.Logger, ctx: ctx, cancel: cancel, tls: tf != nil}
	b.policy = &policy{b: b, opts: opts.Auth, anon: !authOn, lim: lim, stats: &b.stats, retained: map[string]struct{}{}}
	b.policy.deny.file = opts.Auth.DenyFile
	b.policy.deny.onLoad = b.dropDenied
	b.policy.deny.refresh(opts.Logger)
	if err := srv.AddHook(b.policy, nil); err != nil {
		cancel()
		return nil, fmt.Errorf("broker: adding auth hook: %w", err)
	}
	if err := srv.AddHook(&landHook{b: b, prefix: opts.TopicPrefix, handle: opts.Handler}, nil); err != nil {
		cancel()
		return nil, fmt.Errorf("broker: adding landing hook: %w", err)
	}
	if err := srv.AddHook(&AnnounceHook{Server: srv}, nil); err != nil {
		cancel()
		return nil, fmt.Errorf("broker: adding ack announcement hook: %w", err)
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("broker: listening on %s: %w", opts.Addr, err)
	}
	b.ln = ln
	var wrapped net.Listener = newLimitListener(ln, lim, &b.stats)
	if tf != nil {
		wrapped = tls.NewListener(wrapped, tf.config())
	}
	if err := srv.AddListener(listeners.NewNet("tcp", ackListener{wrapped})); err != nil {
		ln.Close()
		cancel()
		return nil, fmt.Errorf("broker: adding listener: %w", err)
	}
	if err := srv.Serve(); err != nil {
		ln.Close()
		cancel()
		return nil, fmt.Errorf("broker: serving: %w", err)
	}
	return b, nil
}

// Addr returns the address the broker listens on.
func (b *Broker) Addr() net.Addr { return b.ln.Addr() }

// URL returns tcp://host:port of the listener, or ssl://host:port with TLS.
func (b *Broker) URL() string {
	if b.tls {
		return "ssl://" + b.ln.Addr().String()
	}
	return "tcp://" + b.ln.Addr().String()
}

// Stats returns the broker's refusal counters.
func (b *Broker) Stats() *Stats { return &b.stats }

// RefreshDenyList reads the deny list file now if it changed (it is also
// read at most once a second as clients connect) and disconnects the
// clients of identities it names.
func (b *Broker) RefreshDenyList() {
	b.policy.deny.mu.Lock()
	b.policy.deny.checked = time.Time{}
	b.policy.deny.mu.Unlock()
	b.policy.deny.refresh(b.log)
}

// dropDenied disconnects the clients of the identities in deny.
func (b *Broker) dropDenied(deny map[string]bool) {
	if b.srv == nil || len(deny) == 0 {
		return
	}
	b.policy.ids.Range(func(k, v any) bool {
		if id := v.(identity); !id.anon && deny[id.id] {
			k.(*mqtt.Client).Stop(errors.New("identity revoked"))
		}
		return true
	})
}

// Publish sends a message from the broker itself (the inline client), e.g.
// live updates. It does not block on slow subscribers.
func (b *Broker) Publish(topic string, payload []byte, qos byte) error {
	return b.srv.Publish(topic, payload, false, qos)
}

// HasSubscribers reports whether any client (or inline subscription) is
// subscribed to a filter matching topic, wildcards and shared subscriptions
// included, so that a publisher can skip encoding messages nobody receives.
// A subscription made just after it returns false misses that one message,
// as it would have missed any message published before it.
func (b *Broker) HasSubscribers(topic string) bool {
	s := b.srv.Topics.Subscribers(topic)
	return len(s.Subscriptions) > 0 || len(s.Shared) > 0 || len(s.InlineSubscriptions) > 0
}

// Clients returns the number of connected clients.
func (b *Broker) Clients() int { return b.srv.Clients.Len() }

// Close stops taking messages: it cancels handlers in progress (their
// messages are not acknowledged and will be resent), closes the listener,
// disconnects clients and waits for the handlers to return.
func (b *Broker) Close() error {
	b.cancel()
	// mochi's Close can deadlock while clients are being removed
	// (mochi-mqtt/server#488: listing a listener's clients read-locks twice,
	// and a removal waiting in between blocks both forever), as when agents
	// disconnect during shutdown. So stop accepting, disconnect everyone and
	// let their goroutines finish (ClientsConnected drops after the removal)
	// first: mochi's Close then has nobody to race with.
	_ = b.ln.Close()
	for _, cl := range b.srv.Clients.GetAll() {
		if !cl.Net.Inline {
			cl.Stop(packets.ErrServerShuttingDown)
		}
	}
	for deadline := time.Now().Add(closeWait); atomic.LoadInt64(&b.srv.Info.ClientsConnected) > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	err := b.srv.Close()
	b.wg.Wait()
	return err
}

// closeWait bounds how long Close waits for disconnected clients'
// goroutines (a handler ignoring its cancelled context keeps one).
const closeWait = 10 * time.Second

type landHook struct {
	mqtt.HookBase
	b      *Broker
	prefix string
	handle Handler
}

func (h *landHook) ID() string { return "pilake-landing" }

// Provides is asked for every hook event of every packet: only OnPublish.
func (h *landHook) Provides(b byte) bool { return b == mqtt.OnPublish }

// OnPublish lands the message before mochi acknowledges it.
func (h *landHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !strings.HasPrefix(pk.TopicName, h.prefix) {
		return pk, nil
	}
	h.b.wg.Add(1)
	defer h.b.wg.Done()
	device := ""
	if v, ok := h.b.policy.ids.Load(cl); ok && !v.(identity).anon {
		device = v.(identity).id
	}
	if err := h.handle(h.b.ctx, device, pk.TopicName, pk.Payload); err != nil {
		if n := h.b.landFailures.Add(1); h.b.ctx.Err() == nil && n&(n-1) == 0 { // the 1st, 2nd, 4th, ... failure
			h.b.log.Warn("landing failed; disconnecting the client so it resends", "client", redact.Clean(cl.ID, 80),
				"topic", redact.Clean(pk.TopicName, 120), "err", err, "failures_total", n)
		}
		// No PUBACK; dropping the connection makes the client resend its
		// unacknowledged messages when it reconnects.
		cl.Stop(fmt.Errorf("landing failed: %w", err))
		return pk, packets.ErrRejectPacket
	}
	if !h.b.HasSubscribers(pk.TopicName) {
		// Acknowledged as usual, but mochi skips delivering it: its own
		// subscriber lookup allocates, ours does not.
		return pk, packets.CodeSuccessIgnore
	}
	return pk, nil
}

// AnnounceHook answers a subscription to a device's landing ack topic
// (wire.AckTopic) with the announcement that this broker's PUBACK means
// "landed" (wire.AckModePuback): the embedded broker acknowledges a batch
// only once it is durable in the lake, so an agent in ack mode "auto"
// deletes on PUBACK and needs no landing acks. Server must have its
// inline client enabled.
type AnnounceHook struct {
	mqtt.HookBase
	Server *mqtt.Server
}

// ID implements mqtt.Hook.
func (h *AnnounceHook) ID() string { return "pilake-ack-announce" }

// Provides implements mqtt.Hook: only OnSubscribed.
func (h *AnnounceHook) Provides(b byte) bool { return b == mqtt.OnSubscribed }

var pubackAnnouncement = wire.EncodeAck(nil, &wire.Ack{Mode: wire.AckModePuback})

// OnSubscribed publishes the announcement on each ack topic subscribed to.
func (h *AnnounceHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] >= 0x80 {
			continue // refused
		}
		if _, ok := wire.DeviceFromAckTopic(f.Filter); ok {
			_ = h.Server.Publish(f.Filter, pubackAnnouncement, false, 1)
		}
	}
}

// levelFloor drops records below a level (mochi logs every connection at Info).
type levelFloor struct {
	slog.Handler
	min slog.Level
}

func (l levelFloor) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.min && l.Handler.Enabled(ctx, lv)
}

func (l levelFloor) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFloor{l.Handler.WithAttrs(a), l.min}
}

func (l levelFloor) WithGroup(n string) slog.Handler {
	return levelFloor{l.Handler.WithGroup(n), l.min}
}
