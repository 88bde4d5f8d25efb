package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/broker"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/internal/testwait"
)

var fleetKey = []byte("0123456789abcdef0123456789abcdef-test-fleet-key")

// pki is a CA that issues server and client certificates in a test.
type pki struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	p := &pki{t: t, dir: t.TempDir(), cert: cert, key: key, pool: pool}
	p.write(name+"-ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(name, typ string, der []byte) string {
	f := filepath.Join(p.dir, name)
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		p.t.Fatal(err)
	}
	return f
}

// issue makes a leaf certificate; it returns the certificate and key files
// and the tls.Certificate.
func (p *pki) issue(cn string, uris []*url.URL, server bool, serial int64) (string, string, tls.Certificate) {
	p.t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, URIs: uris,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	cf := p.write(cn+".pem", "CERTIFICATE", der)
	kf := p.write(cn+".key", "EC PRIVATE KEY", kder)
	pair, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		p.t.Fatal(err)
	}
	return cf, kf, pair
}

// secureBroker starts a TLS broker with tokens and client certificates,
// landing through a Lander.
func secureBroker(t *testing.T, deny string) (*broker.Broker, *pki, lake.Lake, *landing.Lander) {
	t.Helper()
	return secureBrokerWith(t, broker.AuthOptions{FleetKey: fleetKey, DenyFile: deny})
}

func secureBrokerWith(t *testing.T, auth broker.AuthOptions) (*broker.Broker, *pki, lake.Lake, *landing.Lander) {
	t.Helper()
	ca := newPKI(t, "fleet")
	certFile, keyFile, _ := ca.issue("collector", nil, true, 2)
	lk, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ld, err := landing.New(landing.Options{Lake: lk, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(t.Context(), broker.Options{Addr: "127.0.0.1:0", TopicPrefix: "pilake/v1/telemetry/", Logger: quiet,
		TLS:  &broker.TLSOptions{CertFile: certFile, KeyFile: keyFile, ClientCAFile: filepath.Join(ca.dir, "fleet-ca.pem")},
		Auth: auth,
		Handler: func(ctx context.Context, device, topic string, payload []byte) error {
			return ld.LandTopic(ctx, device, topic, payload)
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, ca, lk, ld
}

type creds struct {
	user, pass string
	cert       *tls.Certificate
}

func token(t *testing.T, role broker.Role, id string, ttl time.Duration) creds {
	t.Helper()
	tok, err := broker.IssueToken(fleetKey, role, id, time.Now().Add(ttl))
	if err != nil {
		t.Fatal(err)
	}
	return creds{user: id, pass: tok}
}

// dial connects a v3.1.1 client with c over TLS; it returns the client and
// the connect error.
func dial(t *testing.T, b *broker.Broker, ca *pki, clientID string, c creds, lost chan<- error) (paho.Client, error) {
	t.Helper()
	tc := &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12}
	if c.cert != nil {
		tc.Certificates = []tls.Certificate{*c.cert}
	}
	o := paho.NewClientOptions().AddBroker(b.URL()).SetClientID(clientID).SetTLSConfig(tc).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4)
	if c.user != "" {
		o.SetUsername(c.user).SetPassword(c.pass)
	}
	if lost != nil {
		o.SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	}
	cl := paho.NewClient(o)
	tok := cl.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return cl, errors.New("connect timed out")
	}
	if tok.Error() == nil {
		t.Cleanup(func() { cl.Disconnect(0) })
	}
	return cl, tok.Error()
}

func TestExposedBrokerNeedsAuthAndTLS(t *testing.T) {
	h := func(context.Context, string, string, []byte) error { return nil }
	for _, addr := range []string{"0.0.0.0:0", ":0"} {
		if _, err := broker.New(t.Context(), broker.Options{Addr: addr, Handler: h, Logger: quiet}); !errors.Is(err, broker.ErrExposedWithoutAuth) {
			t.Errorf("%s without auth: err %v, want ErrExposedWithoutAuth", addr, err)
		}
		if _, err := broker.New(t.Context(), broker.Options{Addr: addr, Handler: h, Logger: quiet, Auth: broker.AuthOptions{FleetKey: fleetKey}}); !errors.Is(err, broker.ErrExposedWithoutAuth) {
			t.Errorf("%s with a fleet key but no TLS: err %v, want ErrExposedWithoutAuth", addr, err)
		}
	}
	if _, err := broker.New(t.Context(), broker.Options{Addr: "127.0.0.1:0", Handler: h, Logger: quiet, Auth: broker.AuthOptions{FleetKey: []byte("short")}}); err == nil {
		t.Error("a 5-byte fleet key was accepted")
	}
}

func TestTokenAuthentication(t *testing.T) {
	deny := filepath.Join(t.TempDir(), "deny")
	b, ca, _, _ := secureBroker(t, deny)
	good := token(t, broker.RoleDevice, "dev-a", time.Hour)
	if _, err := dial(t, b, ca, "dev-a", good, nil); err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	expired := token(t, broker.RoleDevice, "dev-a", -time.Second)
	other := token(t, broker.RoleDevice, "dev-b", time.Hour)
	otherKey, _ := broker.IssueToken([]byte(strings.Repeat("k", 40)), broker.RoleDevice, "dev-a", time.Now().Add(time.Hour))
	for _, tc := range []struct {
		desc, clientID string
		c              creds
	}{
		{"expired token", "dev-a", expired},
		{"another device's token", "dev-a", creds{user: "dev-a", pass: other.pass}},
		{"token of another fleet key", "dev-a", creds{user: "dev-a", pass: otherKey}},
		{"no credentials", "dev-a", creds{}},
		{"garbage password", "dev-a", creds{user: "dev-a", pass: "pl1.device.1.x"}},
		{"client id of another device (session takeover)", "dev-b", good},
	} {
		before := b.Stats().AuthFailures.Load()
		if _, err := dial(t, b, ca, tc.clientID, tc.c, nil); err == nil {
			t.Errorf("%s: connected", tc.desc)
		}
		if b.Stats().AuthFailures.Load() != before+1 {
			t.Errorf("%s: auth failures %d, want %d", tc.desc, b.Stats().AuthFailures.Load(), before+1)
		}
	}
	// Revocation: adding dev-a to the deny list drops its connection and
	// refuses the next.
	lost := make(chan error, 1)
	if _, err := dial(t, b, ca, "dev-a:2", good, lost); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(deny, []byte("# revoked\ndev-a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.RefreshDenyList()
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("a revoked identity's connection was not dropped")
	}
	if _, err := dial(t, b, ca, "dev-a", good, nil); err == nil {
		t.Error("a revoked identity connected")
	}
}

func TestMutualTLSAndCertificateReload(t *testing.T) {
	b, ca, lk, _ := secureBroker(t, "")
	_, _, devCert := ca.issue("dev-c", nil, false, 10)
	c, err := dial(t, b, ca, "dev-c", creds{cert: &devCert}, nil)
	if err != nil {
		t.Fatalf("client certificate refused: %v", err)
	}
	if tok := c.Publish(wire.TelemetryTopic("dev-c"), 1, false, batch("dev-c", 1, 10)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	if names, _ := lk.List(t.Context(), "landing/"); len(names) == 0 {
		t.Error("the acknowledged batch is not in landing/")
	}
	// A dashboard named by a URI SAN.
	_, _, dashCert := ca.issue("whatever", []*url.URL{broker.IdentityURI(broker.RoleDashboard, "dash-1")}, false, 11)
	if _, err := dial(t, b, ca, "dash-1:x", creds{cert: &dashCert}, nil); err != nil {
		t.Errorf("dashboard certificate refused: %v", err)
	}
	// A certificate from another CA is not an identity (and no token: refused).
	other := newPKI(t, "other")
	_, _, rogue := other.issue("dev-c", nil, false, 12)
	if _, err := dial(t, b, ca, "dev-c", creds{cert: &rogue}, nil); err == nil {
		t.Error("a certificate of an unknown CA connected")
	}
	// TLS 1.1 is refused.
	conn, err := tls.Dial("tcp", b.Addr().String(), &tls.Config{RootCAs: ca.pool, MaxVersion: tls.VersionTLS11})
	if err == nil {
		conn.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}
	// Replace the server certificate: new handshakes get the new one.
	first := serverSerial(t, b, ca)
	_, _, _ = ca.issue("collector", nil, true, 99) // overwrites collector.pem/.key in ca.dir
	testwait.Until(t, "the renewed server certificate to be loaded", func() bool { return serverSerial(t, b, ca) != first })
}

func serverSerial(t *testing.T, b *broker.Broker, ca *pki) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", b.Addr().String(), &tls.Config{RootCAs: ca.pool})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestACLs: each identity publishes only its own telemetry and status
// topics; only dashboard and ops identities read live and status; nobody
// reads telemetry; only the collector publishes live updates.
func TestACLs(t *testing.T) {
	b, ca, _, ld := secureBroker(t, "")
	pub := func(id, topic string, payload []byte) error {
		t.Helper()
		lost := make(chan error, 1)
		c, err := dial(t, b, ca, id+":p", token(t, broker.RoleDevice, id, time.Hour), lost)
		if err != nil {
			t.Fatal(err)
		}
		tok := c.Publish(topic, 1, strings.HasPrefix(topic, "pilake/v1/status/"), payload)
		select {
		case <-lost:
			return errors.New("disconnected")
		case <-tok.Done():
			return tok.Error()
		case <-time.After(10 * time.Second):
			return errors.New("no PUBACK")
		}
	}
	if err := pub("dev-a", wire.TelemetryTopic("dev-a"), batch("dev-a", 1, 5)); err != nil {
		t.Fatalf("own telemetry: %v", err)
	}
	if err := pub("dev-a", wire.StatusTopic("dev-a"), []byte("online")); err != nil {
		t.Fatalf("own status: %v", err)
	}
	denied := b.Stats().ACLDenied.Load()
	for _, topic := range []string{wire.TelemetryTopic("dev-b"), wire.StatusTopic("dev-b"), wire.LiveTopic("dev-a"),
		"pilake/v1/telemetry/dev-a/extra", "pilake/v1/telemetry/", "pilake/v1/telemetry/x/y", "other/topic"} {
		if err := pub("dev-a", topic, batch("dev-a", 2, 5)); err == nil {
			t.Errorf("dev-a published on %q", topic)
		}
	}
	if got := b.Stats().ACLDenied.Load() - denied; got < 7 {
		t.Errorf("ACL denials %d, want at least 7", got)
	}
	if n := ld.Stats().Batches.Load(); n != 1 {
		t.Errorf("%d batches landed, want 1", n)
	}

	sub := func(c creds, clientID, filter string) (paho.Client, <-chan paho.Message, byte) {
		t.Helper()
		cl, err := dial(t, b, ca, clientID, c, nil)
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan paho.Message, 16)
		tok := cl.Subscribe(filter, 0, func(_ paho.Client, m paho.Message) { ch <- m })
		if !tok.WaitTimeout(10 * time.Second) {
			t.Fatal("no SUBACK")
		}
		res := tok.(*paho.SubscribeToken).Result()
		if len(res) != 1 {
			t.Fatalf("SUBACK results %v", res)
		}
		for _, code := range res {
			return cl, ch, code
		}
		return cl, ch, 0x80
	}
	for _, tc := range []struct {
		who    creds
		filter string
		ok     bool
	}{
		{token(t, broker.RoleDevice, "dev-a", time.Hour), "#", false},
		{token(t, broker.RoleDevice, "dev-a", time.Hour), wire.StatusTopic("dev-a"), false},
		{token(t, broker.RoleDashboard, "dash", time.Hour), "#", false},
		{token(t, broker.RoleDashboard, "dash", time.Hour), wire.TelemetryFilter, false},
		{token(t, broker.RoleDashboard, "dash", time.Hour), "pilake/v1/+/dev-a", false},
		{token(t, broker.RoleDashboard, "dash", time.Hour), "$share/g/" + wire.TelemetryFilter, false},
		{token(t, broker.RoleOps, "ops", time.Hour), "pilake/v1/status/#", true},
		{token(t, broker.RoleDashboard, "dash", time.Hour), wire.LiveFilter, true},
		{token(t, broker.RoleDevice, "dev-a", time.Hour), wire.AckTopic("dev-a"), true},
		{token(t, broker.RoleDevice, "dev-a", time.Hour), wire.AckTopic("dev-b"), false},
		{token(t, broker.RoleDevice, "dev-a", time.Hour), wire.AckTopic("+"), false},
		{token(t, broker.RoleDashboard, "dash", time.Hour), wire.AckTopic("dev-a"), false},
	} {
		_, _, code := sub(tc.who, tc.who.user+":s", tc.filter)
		if got := code < 0x80; got != tc.ok {
			t.Errorf("%s subscribing to %q: SUBACK 0x%02x, want allowed=%v", tc.who.user, tc.filter, code, tc.ok)
		}
	}
	// A device subscribing to its landing ack topic hears that this broker's
	// PUBACK means landed (ack mode auto).
	_, acks, _ := sub(token(t, broker.RoleDevice, "dev-a", time.Hour), "dev-a:acks", wire.AckTopic("dev-a"))
	select {
	case m := <-acks:
		if a, err := wire.DecodeAck(m.Payload()); err != nil || a.Mode != wire.AckModePuback {
			t.Errorf("ack topic message %q (%v), want the puback announcement", m.Payload(), err)
		}
	case <-time.After(10 * time.Second):
		t.Error("no announcement on the ack topic")
	}
	// The dashboard receives the collector's live updates and retained status.
	_, live, _ := sub(token(t, broker.RoleDashboard, "dash", time.Hour), "dash:live", wire.LiveFilter)
	if err := b.Publish(wire.LiveTopic("dev-a"), []byte(`{}`), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-live:
		if m.Topic() != wire.LiveTopic("dev-a") {
			t.Errorf("live topic %q", m.Topic())
		}
	case <-time.After(10 * time.Second):
		t.Error("the dashboard got no live update")
	}
	_, status, _ := sub(token(t, broker.RoleOps, "ops", time.Hour), "ops:st", "pilake/v1/status/+")
	select {
	case m := <-status:
		if string(m.Payload()) != "online" || !m.Retained() {
			t.Errorf("status %q retained=%v", m.Payload(), m.Retained())
		}
	case <-time.After(10 * time.Second):
		t.Error("no retained status")
	}
}

// TestNoPreemption: issue 16 items 1 and 3. Another identity cannot land a
// batch of dev-a (so cannot take its boot id and sequence numbers), neither
// on dev-a's topic (ACL) nor on its own (quarantined: the payload's device is
// not the authenticated one), nor on a topic with more or fewer levels; dev-a's
// real batch with those numbers then lands.
func TestNoPreemption(t *testing.T) {
	b, ca, _, ld := secureBroker(t, "")
	var lostB atomic.Int32
	attacker := func() paho.Client {
		lost := make(chan error, 1)
		c, err := dial(t, b, ca, "dev-b", token(t, broker.RoleDevice, "dev-b", time.Hour), lost)
		if err != nil {
			t.Fatal(err)
		}
		go func() { <-lost; lostB.Add(1) }()
		return c
	}
	forged := batch("dev-a", 7, 5) // dev-a's boot id and next sequence number
	c := attacker()
	if tok := c.Publish(wire.TelemetryTopic("dev-b"), 1, false, forged); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publishing on its own topic: %v", tok.Error())
	}
	if n := ld.Stats().Quarantined(landing.KindDeviceMismatch); n != 1 {
		t.Errorf("device_mismatch quarantined %d, want 1", n)
	}
	for _, topic := range []string{wire.TelemetryTopic("dev-a"), "pilake/v1/telemetry/dev-a/x", "pilake/v1/telemetry/"} {
		c := attacker()
		tok := c.Publish(topic, 1, false, forged)
		tok.WaitTimeout(2 * time.Second)
	}
	a, err := dial(t, b, ca, "dev-a", token(t, broker.RoleDevice, "dev-a", time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok := a.Publish(wire.TelemetryTopic("dev-a"), 1, false, forged); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("dev-a publishing: %v", tok.Error())
	}
	if d, n := ld.Stats().Duplicates.Load(), ld.Stats().Batches.Load(); d != 0 || n != 1 {
		t.Errorf("dev-a's batch: %d landed, %d duplicates; want 1 landed", n, d)
	}
}
