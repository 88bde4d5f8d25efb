package broker

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/pilake/pilake/agent/redact"
	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/internal/clock"
)

// AuthOptions say how clients prove who they are. With neither a fleet key
// nor a client CA (TLSOptions.ClientCAFile) every client is anonymous, which
// New allows only on a loopback address.
type AuthOptions struct {
	// FleetKey verifies the tokens IssueToken makes: username = identity,
	// password = token. At least MinFleetKeyLen bytes.
	FleetKey []byte
	// DenyFile lists revoked identities, one per line ('#' starts a
	// comment). It is read again when it changes (checked at most once a
	// second); clients of an identity added to it are disconnected and
	// cannot connect again. A missing file denies nobody.
	DenyFile string
	// Clock tells the time for token expiry [clock.Real].
	Clock clock.Clock
}

func (a AuthOptions) enabled(t *TLSOptions) bool {
	return len(a.FleetKey) > 0 || (t != nil && t.ClientCAFile != "")
}

// identity is who a client authenticated as.
type identity struct {
	id     string
	role   Role
	expiry time.Time // zero: no expiry (certificate validity is checked by TLS)
	anon   bool      // an anonymous client (loopback only)
}

// policy is the hook that authenticates clients and enforces per-identity
// ACLs, the retained-message rule and the keep-alive bound.
type policy struct {
	mqtt.HookBase
	b     *Broker
	opts  AuthOptions
	anon  bool // no authentication configured: every client is anonymous
	lim   Limits
	ids   sync.Map // *mqtt.Client → identity
	deny  denyList
	stats *Stats

	retainedMu sync.Mutex
	retained   map[string]struct{} // status topics retained
}

func (p *policy) ID() string { return "pilake-policy" }

func (p *policy) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnDisconnect, mqtt.OnPublish:
		return true
	}
	return false
}

// OnConnect bounds the keep-alive, so that an idle or silent connection
// is dropped (mochi sets the read deadline to 1.5 keep-alives after it).
func (p *policy) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	if ka := p.lim.MaxKeepalive; ka > 0 && (cl.State.Keepalive == 0 || cl.State.Keepalive > ka) {
		cl.State.Keepalive = ka
		cl.State.ServerKeepalive = true
	}
	return nil
}

// OnConnectAuthenticate decides who the client is: a verified client
// certificate, else a token, else (without authentication configured) an
// anonymous client.
func (p *policy) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	id, ok, why := p.authenticate(cl, pk)
	if ok && !id.anon {
		p.deny.refresh(p.b.log)
		if p.deny.has(id.id) {
			ok, why = false, "identity revoked (deny list)"
		} else if !clientIDOf(cl.ID, id.id) {
			ok, why = false, "client id must be the identity, or the identity followed by ':'"
		}
	}
	if !ok {
		p.stats.AuthFailures.Add(1)
		p.b.log.Warn("MQTT client refused", "remote", cl.Net.Remote, "client", redact.Clean(cl.ID, 80),
			"username", redact.Clean(string(pk.Connect.Username), 80), "why", why)
		return false
	}
	p.ids.Store(cl, id)
	return true
}

// clientIDOf reports whether client id cid may be used by identity id: the
// same, or id followed by ':' (device ids never contain ':'), so that no
// identity can take over another's session by its client id.
func clientIDOf(cid, id string) bool {
	return cid == id || strings.HasPrefix(cid, id+":")
}

func (p *policy) authenticate(cl *mqtt.Client, pk packets.Packet) (identity, bool, string) {
	if cs, ok := tlsState(cl); ok && len(cs.VerifiedChains) > 0 && len(cs.PeerCertificates) > 0 {
		return certIdentity(cs.PeerCertificates[0])
	}
	user, pass := string(pk.Connect.Username), string(pk.Connect.Password)
	if len(p.opts.FleetKey) > 0 && (user != "" || pass != "") {
		role, exp, err := VerifyToken(p.opts.FleetKey, user, pass, p.now())
		if err != nil {
			return identity{}, false, "token: " + err.Error()
		}
		return identity{id: user, role: role, expiry: exp}, true, ""
	}
	if p.anon {
		return identity{anon: true}, true, ""
	}
	return identity{}, false, "no client certificate or token"
}

func (p *policy) now() time.Time {
	if p.opts.Clock != nil {
		return p.opts.Clock.Now()
	}
	return time.Now()
}

// tlsState returns the TLS connection state of cl's connection, if TLS.
func tlsState(cl *mqtt.Client) (tls.ConnectionState, bool) {
	c := cl.Net.Conn
	if ac, ok := c.(*ackConn); ok {
		c = ac.Conn
	}
	if tc, ok := c.(*tls.Conn); ok {
		return tc.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

// certIdentity reads a verified client certificate: a URI SAN
// pilake://{role}/{id} names identity and role; otherwise the subject's
// common name is a device id.
func certIdentity(c *x509.Certificate) (identity, bool, string) {
	for _, u := range c.URIs {
		if role, id, ok := parseIdentityURI(u); ok {
			return identity{id: id, role: role}, true, ""
		}
	}
	if wire.ValidDeviceID(c.Subject.CommonName) {
		return identity{id: c.Subject.CommonName, role: RoleDevice}, true, ""
	}
	return identity{}, false, "client certificate names no identity (CN or URI pilake://ROLE/ID)"
}

// IdentityURI is the URI SAN a client certificate carries for identity id
// with role: pilake://{role}/{id}.
func IdentityURI(role Role, id string) *url.URL {
	return &url.URL{Scheme: "pilake", Host: string(role), Path: "/" + id}
}

func parseIdentityURI(u *url.URL) (Role, string, bool) {
	if u.Scheme != "pilake" {
		return "", "", false
	}
	role, id := Role(u.Host), strings.TrimPrefix(u.Path, "/")
	return role, id, ValidRole(role) && wire.ValidDeviceID(id)
}

// OnDisconnect forgets the client's identity: the ACL then refuses
// deliveries to its session while it is away, so a disconnected
// persistent session ("ghost") queues nothing; when it reconnects, its new
// connection authenticates again.
func (p *policy) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { p.ids.Delete(cl) }

// OnACLCheck: devices publish their own telemetry and status topics,
// exactly, and subscribe only to their own landing ack topic; dashboard and ops identities read live
// updates and status and publish nothing. Anonymous clients (loopback, no
// authentication configured) may read anything but publish only
// well-formed telemetry and status topics (or topics outside pilake/v1/).
// Nobody but the collector itself publishes live updates.
func (p *policy) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	v, ok := p.ids.Load(cl)
	if !ok {
		p.stats.ACLDenied.Add(1)
		return false
	}
	id := v.(identity)
	allowed := false
	switch {
	case !id.anon && !id.expiry.IsZero() && !p.now().Before(id.expiry):
		// The token expired while connected: nothing more.
	case !id.anon && p.deny.has(id.id):
	case write && id.anon:
		allowed = anonymousMayPublish(topic)
	case write:
		allowed = id.role == RoleDevice && ownTopic(topic, id.id)
	case id.anon:
		allowed = true
	case id.role == RoleDevice:
		// Its own landing ack topic, exactly (see AnnounceHook).
		allowed = topic == wire.AckTopic(id.id)
	default:
		allowed = (id.role == RoleDashboard || id.role == RoleOps) &&
			(strings.HasPrefix(topic, wire.LiveTopic("")) || strings.HasPrefix(topic, wire.StatusTopic("")))
	}
	if !allowed {
		p.stats.ACLDenied.Add(1)
		p.logDenied(cl, id, topic, write)
	}
	return allowed
}

// ownTopic reports whether topic is exactly device's telemetry or status
// topic (without building the topic strings: this runs for every batch).
func ownTopic(topic, device string) bool {
	rest, ok := strings.CutPrefix(topic, wire.TopicPrefix)
	if !ok {
		return false
	}
	if r, ok := strings.CutPrefix(rest, "telemetry/"); ok {
		return r == device
	}
	if r, ok := strings.CutPrefix(rest, "status/"); ok {
		return r == device
	}
	return false
}

// anonymousMayPublish: a well-formed telemetry or status topic, or a topic
// outside pilake/v1/.
func anonymousMayPublish(topic string) bool {
	if !strings.HasPrefix(topic, wire.TopicPrefix) {
		return true
	}
	dev, ok := wire.DeviceFromTopic(topic)
	return ok && (topic == wire.TelemetryTopic(dev) || topic == wire.StatusTopic(dev))
}

// logDenied logs a refusal at most once a second.
func (p *policy) logDenied(cl *mqtt.Client, id identity, topic string, write bool) {
	now := time.Now().Unix()
	if last := p.stats.lastDeniedLog.Load(); now > last && p.stats.lastDeniedLog.CompareAndSwap(last, now) {
		op := "subscribe"
		if write {
			op = "publish"
		}
		p.b.log.Warn("MQTT ACL refused", "op", op, "identity", id.id, "role", string(id.role), "anonymous", id.anon,
			"client", redact.Clean(cl.ID, 80), "topic", redact.Clean(topic, 120), "denied_total", p.stats.ACLDenied.Load())
	}
}

// OnPublish keeps retained messages to device status: a retained
// publication elsewhere, too large, or beyond the cap on retained topics is
// delivered but not retained.
func (p *policy) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !pk.FixedHeader.Retain || cl.Net.Inline {
		return pk, nil
	}
	dev, ok := wire.DeviceFromTopic(pk.TopicName)
	keep := ok && pk.TopicName == wire.StatusTopic(dev) && len(pk.Payload) <= p.lim.MaxRetainedBytes
	if keep {
		p.retainedMu.Lock()
		_, exists := p.retained[pk.TopicName]
		switch {
		case len(pk.Payload) == 0: // clears the retained message
			delete(p.retained, pk.TopicName)
		case exists:
		case len(p.retained) >= p.lim.MaxRetained:
			keep = false
		default:
			p.retained[pk.TopicName] = struct{}{}
		}
		p.retainedMu.Unlock()
	}
	if !keep {
		p.stats.RetainRefused.Add(1)
		pk.FixedHeader.Retain = false
	}
	return pk, nil
}

// denyList is the set of revoked identities, read from a file that may change.
type denyList struct {
	file    string
	mu      sync.Mutex
	checked time.Time
	stamp   string
	ids     atomic.Pointer[map[string]bool]
	onLoad  func(map[string]bool)
}

func (d *denyList) has(id string) bool {
	m := d.ids.Load()
	return m != nil && (*m)[id]
}

// refresh reads the file again if it changed (checked at most once a second).
func (d *denyList) refresh(log *slog.Logger) {
	if d.file == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Since(d.checked) < time.Second {
		return
	}
	d.checked = time.Now()
	stamp := fileStamp(d.file)
	if stamp == d.stamp {
		return
	}
	data, err := os.ReadFile(d.file)
	if err != nil && !os.IsNotExist(err) {
		log.Error("reading deny list failed; keeping the previous one", "file", d.file, "err", err)
		return
	}
	m := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line != "" {
			m[line] = true
		}
	}
	d.stamp = stamp
	d.ids.Store(&m)
	log.Info("deny list loaded", "file", d.file, "identities", len(m))
	if d.onLoad != nil {
		d.onLoad(m)
	}
}
