package main

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/pilake/pilake/agent/wire"
)

// passwordAuth accepts one username/password and records what it saw, and
// the client certificate's common name the TLS layer verified.
type passwordAuth struct {
	mqtt.HookBase
	user, pass string
	mu         sync.Mutex
	seen       []string
}

func (h *passwordAuth) ID() string { return "password" }
func (h *passwordAuth) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (h *passwordAuth) OnACLCheck(*mqtt.Client, string, bool) bool { return true }
func (h *passwordAuth) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	cn := ""
	if tc, ok := cl.Net.Conn.(*tls.Conn); ok {
		if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 {
			cn = st.PeerCertificates[0].Subject.CommonName
		}
	}
	h.mu.Lock()
	h.seen = append(h.seen, cl.ID+" "+string(pk.Connect.Username)+" "+cn)
	h.mu.Unlock()
	return string(pk.Connect.Username) == h.user && string(pk.Connect.Password) == h.pass
}

// TestMQTTOverMutualTLS: a generic broker requiring TLS with a client
// certificate and a username/password.
func TestMQTTOverMutualTLS(t *testing.T) {
	caFile, serverTLS := testCA(t, "broker.example.org")
	clientCAs, certFile, keyFile := testClientCert(t, "pi-tls")
	serverTLS.ClientCAs = clientCAs
	serverTLS.ClientAuth = tls.RequireAndVerifyClientCert
	addr := freeAddr(t)
	hook := &passwordAuth{user: "pi-tls", pass: "s3cret"}
	rec := newRecorder(wire.TopicPrefix + "telemetry/")
	status := newRecorder(wire.StatusTopic("pi-tls"))
	status.id = "status"
	startBroker(t, addr, serverTLS, hook, rec, status)

	dir := t.TempDir()
	summary := filepath.Join(dir, "summary.json")
	ra := startAgent(t, "--simulate", "--device-id", "pi-tls", "--broker", "ssl://"+addr,
		"--tls-ca", caFile, "--tls-server-name", "broker.example.org", "--tls-cert", certFile, "--tls-key", keyFile,
		"--username", "pi-tls", "--password", "s3cret",
		"--spool-dir", filepath.Join(dir, "spool"), "--metrics-addr", "", "--summary-file", summary, "--batch-interval", "250ms")
	rec.waitFor(t, "3 batches over mutual TLS", func(m []message) bool { return len(m) >= 3 })
	if code := ra.stop(t); code != 0 {
		t.Fatalf("agent exited with %d", code)
	}
	checkExact(t, readSummary(t, summary), decodeAll(t, rec.messages()))
	st := status.messages()
	if len(st) < 2 || string(st[0].Payload) != "online" || string(st[len(st)-1].Payload) != "offline" {
		t.Fatalf("status messages %q, want online first and offline last", st)
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if len(hook.seen) == 0 || hook.seen[0] != "pi-tls pi-tls pi-tls" {
		t.Fatalf("broker saw connections %q, want client id, username and certificate CN pi-tls", hook.seen)
	}
}

// TestMetricsPortTakenIsNotFatal: several agents on one machine may be
// given the same metrics port; the later ones run without metrics.
func TestMetricsPortTakenIsNotFatal(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := freeAddr(t)
	rec := newRecorder(wire.TopicPrefix + "telemetry/")
	startBroker(t, addr, nil, new(auth.AllowHook), rec)
	dir := t.TempDir()
	ra := startAgent(t, "--simulate", "--device-id", "pi-port", "--broker", "tcp://"+addr,
		"--spool-dir", filepath.Join(dir, "spool"), "--metrics-addr", taken.Addr().String(), "--batch-interval", "100ms")
	rec.waitFor(t, "a batch despite the taken metrics port", func(m []message) bool { return len(m) >= 1 })
	if code := ra.stop(t); code != 0 {
		t.Fatalf("agent exited with %d", code)
	}
	if !strings.Contains(ra.log.String(), "metrics endpoint disabled") {
		t.Fatalf("no warning about the taken port in the log:\n%s", ra.log.String())
	}
}
