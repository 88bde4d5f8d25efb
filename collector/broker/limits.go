package broker

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bound what clients can make the broker hold. The zero value of a
// field means its default (in brackets); a negative value means no limit
// where that is allowed.
type Limits struct {
	// ConnectTimeout is how long a new connection has to complete its TLS
	// handshake and CONNECT [10s].
	ConnectTimeout time.Duration
	// MaxConnections is the most open connections, authenticated or not
	// [10000]. Connections beyond it are closed at once.
	MaxConnections int
	// MaxConnectionsPerSource is the most open connections from one IP
	// address [1000]; a fleet behind one NAT needs it above its size.
	MaxConnectionsPerSource int
	// MaxKeepalive is the keep-alive the broker imposes on clients asking
	// for none or a longer one, in seconds [120]; a connection silent for
	// 1.5 times it is dropped.
	MaxKeepalive uint16
	// SessionExpiry is how long a disconnected persistent session (its
	// subscriptions and queued messages) is kept [1h].
	SessionExpiry time.Duration
	// MessageExpiry is how long a message queued for a client is kept [1h].
	MessageExpiry time.Duration
	// MaxInflight is the most QoS 1/2 messages queued for one client
	// (offline sessions included) [1024]; beyond it deliveries are dropped.
	MaxInflight int
	// MaxRetained is the most retained topics [20000]; only device status
	// topics are retained at all.
	MaxRetained int
	// MaxRetainedBytes is the largest retained payload [256].
	MaxRetainedBytes int
	// MaxPacketSize is the largest MQTT packet accepted [MaxPacketSize];
	// mochi refuses a bigger one before allocating it.
	MaxPacketSize int
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxConnections, 10000)
	def(&l.MaxConnectionsPerSource, 1000)
	def(&l.MaxInflight, 1024)
	def(&l.MaxRetained, 20000)
	def(&l.MaxRetainedBytes, 256)
	def(&l.MaxPacketSize, MaxPacketSize)
	if l.ConnectTimeout == 0 {
		l.ConnectTimeout = 10 * time.Second
	}
	if l.MaxKeepalive == 0 {
		l.MaxKeepalive = 120
	}
	if l.SessionExpiry == 0 {
		l.SessionExpiry = time.Hour
	}
	if l.MessageExpiry == 0 {
		l.MessageExpiry = time.Hour
	}
	if l.MaxInflight > 65535 {
		l.MaxInflight = 65535
	}
	return l
}

// Stats count what the broker refused; read them with the atomics' Load.
type Stats struct {
	AuthFailures      atomic.Uint64 // CONNECTs refused: bad or missing credentials, revoked identity
	ACLDenied         atomic.Uint64 // publications, subscriptions and deliveries refused by the ACL
	ConnRefusedTotal  atomic.Uint64 // connections closed at once: MaxConnections reached
	ConnRefusedSource atomic.Uint64 // connections closed at once: MaxConnectionsPerSource reached
	RetainRefused     atomic.Uint64 // retained publications not retained (not status, too big, cap)
	lastDeniedLog     atomic.Int64
}

// limitListener closes connections beyond the caps and gives every new
// connection a deadline to complete its handshake and CONNECT; mochi
// replaces the deadline by the keep-alive's once the CONNECT is read.
type limitListener struct {
	net.Listener
	lim   Limits
	stats *Stats

	mu     sync.Mutex
	total  int
	source map[string]int
}

func newLimitListener(ln net.Listener, lim Limits, stats *Stats) *limitListener {
	return &limitListener{Listener: ln, lim: lim, stats: stats, source: map[string]int{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := c.RemoteAddr().String()
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		l.mu.Lock()
		switch {
		case l.lim.MaxConnections > 0 && l.total >= l.lim.MaxConnections:
			l.stats.ConnRefusedTotal.Add(1)
		case l.lim.MaxConnectionsPerSource > 0 && l.source[host] >= l.lim.MaxConnectionsPerSource:
			l.stats.ConnRefusedSource.Add(1)
		default:
			l.total++
			l.source[host]++
			l.mu.Unlock()
			_ = c.SetDeadline(time.Now().Add(l.lim.ConnectTimeout))
			return &countedConn{Conn: c, l: l, host: host}, nil
		}
		l.mu.Unlock()
		_ = c.Close()
	}
}

func (l *limitListener) release(host string) {
	l.mu.Lock()
	l.total--
	if l.source[host]--; l.source[host] <= 0 {
		delete(l.source, host)
	}
	l.mu.Unlock()
}

// countedConn gives its slot back when closed.
type countedConn struct {
	net.Conn
	l    *limitListener
	host string
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.release(c.host) })
	return c.Conn.Close()
}
