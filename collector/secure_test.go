package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/pilake/pilake/agent/uplink"
	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/broker"
	"github.com/pilake/pilake/internal/testwait"
)

// testCA writes a CA and issues certificates into dir.
type testCA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fleet CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{dir: t.TempDir(), cert: cert, key: key}
	writePEM(t, filepath.Join(ca.dir, "ca.pem"), "CERTIFICATE", der)
	return ca
}

func writePEM(t *testing.T, name, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue returns the certificate and key files of cn (a server certificate
// for 127.0.0.1 if server).
func (ca *testCA) issue(t *testing.T, cn string, server bool) (string, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	cf, kf := filepath.Join(ca.dir, cn+".pem"), filepath.Join(ca.dir, cn+".key")
	writePEM(t, cf, "CERTIFICATE", der)
	writePEM(t, kf, "EC PRIVATE KEY", kder)
	return cf, kf
}

// TestSecureBrokerEndToEnd runs the collector as the README's "Running the
// collector on the internet" says (TLS, fleet-key tokens, client
// certificates) and lands batches from the agent's own uplink code with a
// token and with a certificate; an anonymous client is refused.
func TestSecureBrokerEndToEnd(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := ca.issue(t, "collector", true)
	keyPath := filepath.Join(t.TempDir(), "fleet.key")
	if err := os.WriteFile(keyPath, []byte("Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtb2Yta2V5LW1hdGVyaWFs\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA, cfg.FleetKeyFile = certFile, keyFile, filepath.Join(ca.dir, "ca.pem"), keyPath
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	rc := startCollector(t, cfg)
	if !strings.HasPrefix(rc.st.MQTT, "ssl://") {
		t.Fatalf("broker URL %s", rc.st.MQTT)
	}
	fleetKey, err := readFleetKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	token, err := broker.IssueToken(fleetKey, broker.RoleDevice, "pi-token", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	devCert, devKey := ca.issue(t, "pi-cert", false)
	send := func(c uplink.Options, device string) {
		t.Helper()
		c.Broker, c.ClientID, c.CAFile, c.Logger = rc.st.MQTT, device, filepath.Join(ca.dir, "ca.pem"), slog.New(slog.DiscardHandler)
		conn, err := uplink.NewMQTT(c)
		if err != nil {
			t.Fatal(err)
		}
		conn.Start(t.Context())
		defer conn.Close(time.Second)
		deadline := time.After(15 * time.Second)
		for !conn.Connected() {
			select {
			case <-conn.Changed():
			case <-deadline:
				t.Fatalf("%s did not connect", device)
			}
		}
		tok := conn.Publish(wire.TelemetryTopic(device), encodeBatch(t, device, 1))
		select {
		case <-tok.Done():
			if tok.Error() != nil {
				t.Fatal(tok.Error())
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s: no PUBACK", device)
		}
	}
	send(uplink.Options{Username: "pi-token", Password: token}, "pi-token")
	send(uplink.Options{CertFile: devCert, KeyFile: devKey}, "pi-cert")

	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	anon := paho.NewClient(paho.NewClientOptions().AddBroker(rc.st.MQTT).SetClientID("anon").SetProtocolVersion(4).
		SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}).SetConnectTimeout(5 * time.Second))
	if tok := anon.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		anon.Disconnect(0)
		t.Error("an anonymous client connected")
	}
	_, metrics := get(t, rc.st.Metrics+"/metrics")
	for _, want := range []string{"pilake_collector_batches_in_total 2", `pilake_collector_limited_total{limit="auth"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func encodeBatch(t *testing.T, device string, seq uint64) []byte {
	t.Helper()
	b := &wire.Batch{DeviceID: device, BootID: 7, Seq: seq, IntervalUS: 2500}
	t0 := time.Now().UnixMicro()
	for i := range 10 {
		b.Readings = append(b.Readings, wire.Reading{TimeUS: t0 + int64(i)*2500, Temp: 2150, Press: 101325 * 256, Hum: 45 * 1024})
	}
	data, err := wire.NewEncoder(wire.Binary).Append(nil, b)
	if err != nil {
		t.Fatal(fmt.Errorf("encoding: %w", err))
	}
	return data
}

// TestExternalBrokerOverTLS: the collector ingests from an external broker
// over TLS with --broker-tls-ca (the broker here is the embedded one in
// plain-broker mode, serving TLS on loopback).
func TestExternalBrokerOverTLS(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := ca.issue(t, "broker", true)
	ext, err := broker.New(t.Context(), broker.Options{Addr: "127.0.0.1:0", TopicPrefix: "not-landed-here/", Logger: slog.New(slog.DiscardHandler),
		TLS:     &broker.TLSOptions{CertFile: certFile, KeyFile: keyFile},
		Handler: func(context.Context, string, string, []byte) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	cfg := testConfig(t)
	cfg.Broker, cfg.ClientID, cfg.BrokerTLSCA = ext.URL(), "collector-tls", filepath.Join(ca.dir, "ca.pem")
	rc := startCollector(t, cfg)
	waitReady(t, rc) // subscribed to the external broker over TLS
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	agent := paho.NewClient(paho.NewClientOptions().AddBroker(ext.URL()).SetClientID("pi-ext").
		SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	if tok := agent.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer agent.Disconnect(0)
	for seq := uint64(1); seq <= 3; seq++ {
		if tok := agent.Publish(wire.TelemetryTopic("pi-ext"), 1, false, encodeBatch(t, "pi-ext", seq)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	testwait.Until(t, "the batches to land from the external broker over TLS", func() bool {
		_, m := get(t, rc.st.Metrics+"/metrics")
		return strings.Contains(m, "pilake_collector_batches_in_total 3")
	})
}
