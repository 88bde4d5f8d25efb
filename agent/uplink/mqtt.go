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
)

// Config configures an MQTT connection.
type Config struct {
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
type MQTT struct {
	cfg    Config
	log    *slog.Logger
	client mqtt.Client

	connected  atomic.Bool
	connects   atomic.Int64
	connLosses atomic.Int64
	dialFails  atomic.Int64
	changed    chan struct{}

	mu   sync.Mutex
	conn net.Conn // the current network connection, for renewal
	stop chan struct{}
	done chan struct{}
}

// Publisher is what a Forwarder needs from a connection.
type Publisher interface {
	// Publish sends payload to topic at QoS 1; the token completes on PUBACK.
	Publish(topic string, payload []byte) mqtt.Token
	// Connected reports whether the connection is up now.
	Connected() bool
	// Changed receives a value whenever the connection goes up or down.
	Changed() <-chan struct{}
}

var _ Publisher = (*MQTT)(nil)

// NewMQTT validates cfg and prepares a client; Start connects it.
func NewMQTT(cfg Config) (*MQTT, error) {
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
	var tlsCfg *tls.Config
	if useTLS {
		if tlsCfg, err = buildTLS(cfg, u.Hostname()); err != nil {
			return nil, err
		}
	} else if cfg.CAFile != "" || cfg.CertFile != "" {
		return nil, fmt.Errorf("mqtt: TLS files given but broker %q is not a TLS URL (use ssl://)", cfg.Broker)
	}
	m := &MQTT{cfg: cfg, log: cfg.Logger.With(slog.String("broker", cfg.Broker)), changed: make(chan struct{}, 1)}
	opts := mqtt.NewClientOptions().
		AddBroker("tcp://" + u.Host). // the scheme is ours to handle in dial
		SetClientID(cfg.ClientID).
		SetCleanSession(false).
		SetOrderMatters(false).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(cfg.MaxReconnectInterval).
		SetKeepAlive(cfg.KeepAlive).
		SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(10 * time.Second).
		SetProtocolVersion(4).
		SetCustomOpenConnectionFn(func(_ *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			return m.dial(u.Host, tlsCfg)
		}).
		SetOnConnectHandler(m.onConnect).
		SetConnectionLostHandler(m.onLost)
	if cfg.Credentials != nil {
		opts.SetCredentialsProvider(func() (string, string) { return cfg.Credentials() })
	} else {
		opts.SetUsername(cfg.Username).SetPassword(cfg.Password)
	}
	if cfg.StatusTopic != "" {
		opts.SetBinaryWill(cfg.StatusTopic, []byte("offline"), 1, true)
	}
	m.client = mqtt.NewClient(opts)
	return m, nil
}

func buildTLS(cfg Config, host string) (*tls.Config, error) {
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

func (m *MQTT) dial(addr string, tlsCfg *tls.Config) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	var c net.Conn
	var err error
	if tlsCfg != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, tlsCfg)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		// Log the first failure of a run of them, then at powers of two.
		if n := m.dialFails.Add(1); n&(n-1) == 0 {
			m.log.Warn("mqtt broker unreachable; retrying (batches wait in the spool)", "attempts", n, "err", err)
		}
		return nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	m.dialFails.Store(0)
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

func (m *MQTT) onConnect(c mqtt.Client) {
	n := m.connects.Add(1)
	m.connected.Store(true)
	m.log.Info("mqtt connected", "connects", n)
	if m.cfg.StatusTopic != "" {
		c.Publish(m.cfg.StatusTopic, 1, true, []byte("online"))
	}
	m.signal()
}

func (m *MQTT) onLost(_ mqtt.Client, err error) {
	m.connLosses.Add(1)
	m.connected.Store(false)
	m.log.Warn("mqtt connection lost; reconnecting", "err", err)
	m.signal()
}

// Start connects in the background (retrying until Close) and, with
// RenewEvery, renews the connection periodically until ctx ends.
func (m *MQTT) Start(ctx context.Context) {
	m.mu.Lock()
	if m.stop != nil {
		m.mu.Unlock()
		return
	}
	m.stop, m.done = make(chan struct{}), make(chan struct{})
	m.mu.Unlock()
	m.client.Connect() // with ConnectRetry, completes when connected
	go func() {
		defer close(m.done)
		if m.cfg.RenewEvery <= 0 {
			select {
			case <-ctx.Done():
			case <-m.stop:
			}
			return
		}
		t := time.NewTicker(m.cfg.RenewEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-m.stop:
				return
			case <-t.C:
				m.Renew()
			}
		}
	}()
}

// Renew breaks the network connection so that paho reconnects, asking
// Credentials again; messages in flight are resent on the new connection.
func (m *MQTT) Renew() {
	m.mu.Lock()
	c := m.conn
	m.mu.Unlock()
	if c != nil && m.connected.Load() {
		m.log.Info("mqtt renewing connection (fresh credentials)")
		// Expire the read deadline rather than closing: paho ignores "use of
		// closed network connection" errors, but a read timeout is a lost
		// connection, which it reconnects after, resending what is in flight.
		_ = c.SetReadDeadline(time.Now())
	}
}

// Publish implements Publisher.
func (m *MQTT) Publish(topic string, payload []byte) mqtt.Token {
	return m.client.Publish(topic, 1, false, payload)
}

// Connected implements Publisher.
func (m *MQTT) Connected() bool { return m.connected.Load() && m.client.IsConnectionOpen() }

// Changed implements Publisher.
func (m *MQTT) Changed() <-chan struct{} { return m.changed }

// Connects counts successful connections (the first and every reconnect).
func (m *MQTT) Connects() int64 { return m.connects.Load() }

// Reconnects counts connections after the first.
func (m *MQTT) Reconnects() int64 { return max(m.connects.Load()-1, 0) }

// Close publishes "offline" (when StatusTopic is set), disconnects, waiting
// up to quiesce for outstanding work, and stops renewal.
func (m *MQTT) Close(quiesce time.Duration) {
	m.mu.Lock()
	if m.stop != nil {
		select {
		case <-m.stop:
		default:
			close(m.stop)
		}
	}
	done := m.done
	m.mu.Unlock()
	if m.cfg.StatusTopic != "" && m.Connected() {
		m.client.Publish(m.cfg.StatusTopic, 1, true, []byte("offline")).WaitTimeout(quiesce)
	}
	m.client.Disconnect(uint(quiesce / time.Millisecond))
	m.connected.Store(false)
	if done != nil {
		<-done
	}
}
