package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/pilake/pilake/internal/backoff"
)

// Options configures an MQTT connection.
type Options struct {
	// Broker is tcp://host:port (also mqtt://), or ssl://, tls://, mqtts://
	// for TLS.
	Broker string
	// ClientID is the MQTT client id (the device id). Required.
	ClientID string
	// Username and Password authenticate the client (optional).
	Username, Password string
	// Credentials, if set, is asked for username and password on every
	// connect and overrides Username/Password (IoT Hub SAS tokens).
	Credentials func() (username, password string)
	// CAFile is a PEM file of CAs to trust instead of the system roots.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and key (optional).
	CertFile, KeyFile string
	// ServerName overrides the TLS server name checked in the broker's
	// certificate (default: the broker's host).
	ServerName string
	// TLS, if set, is used as is for TLS brokers (tests).
	TLS *tls.Config
	// StatusTopic, if set, gets a retained "online" on every connect and is
	// the will topic, with a retained "offline".
	StatusTopic string
	// AckTopic, if set, is subscribed to (QoS 1) on every connect; what
	// arrives on it goes to OnAck (landing acks, wire.AckTopic).
	AckTopic string
	// OnAck receives the payloads published on AckTopic (from paho's
	// goroutines; it may block briefly).
	OnAck func(payload []byte)
	// KeepAlive is the MQTT keep-alive (default 30 s).
	KeepAlive time.Duration
	// MaxReconnectInterval caps the reconnect backoff (default 30 s).
	MaxReconnectInterval time.Duration
	// RenewEvery, if set, makes the connection close and reconnect with fresh
	// Credentials this often (IoT Hub token renewal).
	RenewEvery time.Duration
	// Logger receives connection events (default slog.Default()).
	Logger *slog.Logger
}

// MQTT is a connection to a broker that keeps itself connected.
//
// Each connection is a fresh paho client with a persistent session (clean
// session off) and no message store: redelivery is the spool's job, not
// paho's. (paho v1's own resume of stored messages completes the original
// publish tokens before the broker has acknowledged the resent messages, and
// races with publishes made right after a connect; with no store there is
// nothing to resume.) When a connection is lost or renewed, its Epoch ends:
// a Forwarder then puts the batches it had in flight back into the spool and
// sends them again on the next connection.
type MQTT struct {
	cfg    Options
	log    *slog.Logger
	broker *url.URL
	tlsCfg *tls.Config

	connected  atomic.Bool
	epoch      atomic.Uint64
	connects   atomic.Int64
	dialFails  atomic.Int64
	shortLived atomic.Int64
	changed    chan struct{}
	renew      chan struct{}

	mu      sync.Mutex
	client  mqtt.Client // the current connection's client, nil while down
	conn    net.Conn
	started bool
	stop    chan struct{}
	done    chan struct{}
}

// Token is the completion of a publication: Done is closed when the broker
// acknowledged it (Error nil) or it failed. mqtt.Token satisfies it.
type Token interface {
	Done() <-chan struct{}
	Error() error
}

// Publisher is what a Forwarder needs from a connection.
type Publisher interface {
	// Publish sends payload to topic at QoS 1; the token completes on PUBACK.
	Publish(topic string, payload []byte) Token
	// State reports whether a connection is up and its epoch, a number that
	// changes with every new connection.
	State() (connected bool, epoch uint64)
	// Changed receives a value whenever the connection goes up or down.
	Changed() <-chan struct{}
}

var _ Publisher = (*MQTT)(nil)

// ErrNotConnected is the error of a publication attempted while down.
var ErrNotConnected = errors.New("mqtt: not connected")

type doneToken struct{ err error }

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (t doneToken) Done() <-chan struct{} { return closedChan }
func (t doneToken) Error() error          { return t.err }

// NewMQTT validates cfg; Start connects.
func NewMQTT(cfg Options) (*MQTT, error) {
	if cfg.ClientID == "" {
		return nil, errors.New("mqtt: no client id")
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 30 * time.Second
	}
	if cfg.MaxReconnectInterval <= 0 {
		cfg.MaxReconnectInterval = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	u, err := url.Parse(cfg.Broker)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("mqtt: broker %q: want scheme://host:port", cfg.Broker)
	}
	useTLS := false
	switch u.Scheme {
	case "tcp", "mqtt":
	case "ssl", "tls", "mqtts", "tcps":
		useTLS = true
	default:
		return nil, fmt.Errorf("mqtt: broker %q: unknown scheme %q (want tcp, mqtt, ssl, tls or mqtts)", cfg.Broker, u.Scheme)
	}
	m := &MQTT{cfg: cfg, log: cfg.Logger.With(slog.String("broker", cfg.Broker)), broker: u,
		changed: make(chan struct{}, 1), renew: make(chan struct{}, 1)}
	if useTLS {
		if m.tlsCfg, err = buildTLS(cfg, u.Hostname()); err != nil {
			return nil, err
		}
	} else if cfg.CAFile != "" || cfg.CertFile != "" {
		return nil, fmt.Errorf("mqtt: TLS files given but broker %q is not a TLS URL (use ssl://)", cfg.Broker)
	}
	return m, nil
}

// options returns paho options for one connection; lost is called when it drops.
func (m *MQTT) options(lost func(error)) *mqtt.ClientOptions {
	opts := mqtt.NewClientOptions().
		AddBroker("tcp://" + m.broker.Host). // the scheme is ours to handle in dial
		SetClientID(m.cfg.ClientID).
		SetCleanSession(false).
		SetStore(noStore{}).
		SetOrderMatters(false).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(m.cfg.KeepAlive).
		SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(10 * time.Second).
		SetProtocolVersion(4).
		SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) { return m.dial() }).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { lost(err) })
	if m.cfg.Credentials != nil {
		user, pass := m.cfg.Credentials()
		opts.SetUsername(user).SetPassword(pass)
	} else {
		opts.SetUsername(m.cfg.Username).SetPassword(m.cfg.Password)
	}
	if m.cfg.AckTopic != "" && m.cfg.OnAck != nil {
		// The session is persistent: acks queued while the agent was away
		// arrive before Subscribe is called again.
		opts.SetDefaultPublishHandler(func(_ mqtt.Client, msg mqtt.Message) {
			if msg.Topic() == m.cfg.AckTopic {
				m.cfg.OnAck(msg.Payload())
			}
		})
	}
	if m.cfg.StatusTopic != "" {
		opts.SetBinaryWill(m.cfg.StatusTopic, []byte("offline"), 1, true)
	}
	return opts
}

func buildTLS(cfg Options, host string) (*tls.Config, error) {
	if cfg.TLS != nil {
		return cfg.TLS.Clone(), nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if cfg.ServerName != "" {
		t.ServerName = cfg.ServerName
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt: reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt: CA file %s holds no PEM certificate", cfg.CAFile)
		}
		t.RootCAs = pool
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("mqtt: a client certificate needs both a cert file and a key file")
	}
	if cfg.CertFile != "" {
		c, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt: loading client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{c}
	}
	return t, nil
}

func (m *MQTT) dial() (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	addr := m.broker.Host
	var c net.Conn
	var err error
	if m.tlsCfg != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, m.tlsCfg)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	m.mu.Lock()
	m.conn = c
	m.mu.Unlock()
	return c, nil
}

func (m *MQTT) signal() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// Start connects in the background, and keeps reconnecting (backoff 1 s
// doubling to MaxReconnectInterval) and renewing (RenewEvery) until ctx ends
// or Close.
func (m *MQTT) Start(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started {
		return
	}
	m.started = true
	m.stop, m.done = make(chan struct{}), make(chan struct{})
	go m.loop(ctx, m.stop, m.done)
}

func (m *MQTT) loop(ctx context.Context, stop, done chan struct{}) {
	defer close(done)
	retry := backoff.Backoff{Min: time.Second, Max: m.cfg.MaxReconnectInterval} // doubling, no jitter
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
		case <-stop:
		}
		return false
	}
	for {
		lost := make(chan error, 1)
		c := mqtt.NewClient(m.options(func(err error) {
			select {
			case lost <- err:
			default:
			}
		}))
		tok := c.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			c.Disconnect(0)
			return
		case <-stop:
			c.Disconnect(0)
			return
		}
		if err := tok.Error(); err != nil {
			d := retry.Next()
			// Log the first failure of a run, then at powers of two.
			if n := m.dialFails.Add(1); n&(n-1) == 0 {
				m.log.Warn("mqtt broker unreachable; retrying (batches wait in the spool)", "attempts", n, "retry_in", d, "err", err)
			}
			if !wait(d) {
				return
			}
			continue
		}
		connectedAt := time.Now()
		m.dialFails.Store(0)
		m.mu.Lock()
		m.client = c
		m.mu.Unlock()
		m.epoch.Add(1)
		m.connected.Store(true)
		n := m.connects.Add(1)
		m.log.Info("mqtt connected", "connects", n)
		if m.cfg.StatusTopic != "" {
			c.Publish(m.cfg.StatusTopic, 1, true, []byte("online"))
		}
		if m.cfg.AckTopic != "" && m.cfg.OnAck != nil {
			stok := c.Subscribe(m.cfg.AckTopic, 1, func(_ mqtt.Client, msg mqtt.Message) { m.cfg.OnAck(msg.Payload()) })
			go func() {
				if stok.WaitTimeout(30*time.Second) && stok.Error() != nil {
					m.log.Warn("subscribing to the landing ack topic failed", "topic", m.cfg.AckTopic, "err", stok.Error())
				}
			}()
		}
		m.signal()

		var renewC <-chan time.Time
		var renewT *time.Timer
		if m.cfg.RenewEvery > 0 {
			renewT = time.NewTimer(m.cfg.RenewEvery)
			renewC = renewT.C
		}
		quit, renewing := false, false
		select {
		case err := <-lost:
			m.log.Warn("mqtt connection lost; reconnecting", "err", err)
		case <-renewC:
			renewing = true
			m.log.Info("mqtt renewing the connection (fresh credentials)")
		case <-m.renew:
			renewing = true
			m.log.Info("mqtt renewing the connection (fresh credentials)")
		case <-ctx.Done():
			quit = true
		case <-stop:
			quit = true
		}
		if renewT != nil {
			renewT.Stop()
		}
		m.mu.Lock()
		m.client = nil
		m.mu.Unlock()
		m.connected.Store(false)
		m.signal()
		if quit {
			c.Disconnect(0) // Close already said goodbye
			return
		}
		c.Disconnect(250)
		// A connection that ends soon after it began (a broker that
		// disconnects on every failed landing, a full lake) is retried with
		// the same growing backoff as a failed dial, not at once: failures
		// slow the client down instead of making it storm the broker.
		if !renewing && time.Since(connectedAt) < stableAfter {
			m.shortLived.Add(1)
			if !wait(retry.Next()) {
				return
			}
		} else {
			retry.Reset()
		}
	}
}

// stableAfter is how long a connection must last for the reconnect backoff
// to start again from 1 s.
var stableAfter = 10 * time.Second

// ShortLived counts connections that ended within 10 s of their start and
// were followed by a backoff.
func (m *MQTT) ShortLived() int64 { return m.shortLived.Load() }

// Renew closes the current connection gracefully and connects again, asking
// Credentials for fresh ones.
func (m *MQTT) Renew() {
	select {
	case m.renew <- struct{}{}:
	default:
	}
}

// Publish implements Publisher.
func (m *MQTT) Publish(topic string, payload []byte) Token {
	m.mu.Lock()
	c := m.client
	m.mu.Unlock()
	if c == nil {
		return doneToken{err: ErrNotConnected}
	}
	return c.Publish(topic, 1, false, payload)
}

// State implements Publisher.
func (m *MQTT) State() (bool, uint64) { return m.connected.Load(), m.epoch.Load() }

// Connected reports whether a connection is up.
func (m *MQTT) Connected() bool { return m.connected.Load() }

// Changed implements Publisher.
func (m *MQTT) Changed() <-chan struct{} { return m.changed }

// Connects counts successful connections (the first and every reconnect).
func (m *MQTT) Connects() int64 { return m.connects.Load() }

// Reconnects counts connections after the first.
func (m *MQTT) Reconnects() int64 { return max(m.connects.Load()-1, 0) }

// Close publishes "offline" (when StatusTopic is set and connected), waits up
// to quiesce for outstanding work, disconnects and stops reconnecting.
func (m *MQTT) Close(quiesce time.Duration) {
	m.mu.Lock()
	c, stop, done := m.client, m.stop, m.done
	m.mu.Unlock()
	if c != nil {
		if m.cfg.StatusTopic != "" {
			c.Publish(m.cfg.StatusTopic, 1, true, []byte("offline")).WaitTimeout(quiesce)
		}
		c.Disconnect(uint(quiesce / time.Millisecond))
	}
	if stop != nil {
		m.mu.Lock()
		select {
		case <-stop:
		default:
			close(stop)
		}
		m.mu.Unlock()
		<-done
	}
	m.connected.Store(false)
}

// noStore is a paho message store that keeps nothing (see MQTT).
type noStore struct{}

func (noStore) Open()                             {}
func (noStore) Put(string, packets.ControlPacket) {}
func (noStore) Get(string) packets.ControlPacket  { return nil }
func (noStore) All() []string                     { return nil }
func (noStore) Del(string)                        {}
func (noStore) Close()                            {}
func (noStore) Reset()                            {}

var _ mqtt.Store = noStore{}
