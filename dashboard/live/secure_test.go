package live

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/broker"
)

// TestLiveOnlyFromCollector: issue 16 item 12. Against the collector's
// broker with TLS and tokens, the dashboard (a dashboard identity) receives
// the collector's live updates, and a device identity cannot publish fake
// ones (the ACL refuses them; nothing reaches the hub).
func TestLiveOnlyFromCollector(t *testing.T) {
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "collector"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}, ca, &key.PublicKey, caKey)
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "c.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	fleetKey := []byte("0123456789abcdef0123456789abcdef-dashboard")
	b, err := broker.New(t.Context(), broker.Options{Addr: "127.0.0.1:0", TLS: &broker.TLSOptions{CertFile: certFile, KeyFile: keyFile},
		Auth: broker.AuthOptions{FleetKey: fleetKey}, Handler: func(context.Context, string, string, []byte) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}

	hub := NewHub(64, nil)
	dashTok, _ := broker.IssueToken(fleetKey, broker.RoleDashboard, "dash-1", time.Now().Add(time.Hour))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- RunMQTT(ctx, MQTTOptions{Broker: b.URL(), Username: "dash-1", Password: dashTok, TLS: tc}, hub, nil)
	}()
	waitStatus(t, hub, "online")

	// A device tries to publish a fake live update: refused (disconnected).
	devTok, _ := broker.IssueToken(fleetKey, broker.RoleDevice, "pi-1", time.Now().Add(time.Hour))
	dev := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("pi-1").SetUsername("pi-1").
		SetPassword(devTok).SetTLSConfig(tc).SetAutoReconnect(false))
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	dev.Publish(wire.LiveTopic("pi-1"), 1, false, liveJSON(t, "pi-1", 1_000_000)).WaitTimeout(5 * time.Second)
	dev.Disconnect(0)

	// The collector's update arrives.
	sig, stop := hub.Subscribe()
	defer stop()
	if err := b.Publish(wire.LiveTopic("pi-2"), liveJSON(t, "pi-2", 2_000_000), 0); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for len(hub.Recent("")) == 0 {
		select {
		case <-sig:
		case <-timeout:
			t.Fatal("the collector's live update did not arrive")
		}
	}
	if r := hub.Recent(""); len(r) != 1 || r[0].Device != "pi-2" {
		t.Errorf("hub holds %d updates, first of %q; want only the collector's (pi-2)", len(r), r[0].Device)
	}
	if b.Stats().ACLDenied.Load() == 0 {
		t.Error("the device's live publication was not refused")
	}
	cancel()
	<-done
}
