package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/common/expfmt"

	"github.com/pilake/pilake/scripts/testenv"
	"github.com/prometheus/common/model"
)

// recorder is a mochi hook that keeps every message published on topics
// with a given prefix, before the broker sends the PUBACK, so anything the
// agent sees acknowledged is recorded. It survives broker restarts.
type recorder struct {
	mqtt.HookBase
	prefix string
	id     string // hook id; set it to use two recorders on one broker

	mu     sync.Mutex
	msgs   []message
	notify chan struct{}
}

type message struct {
	Topic   string
	Payload []byte
}

func newRecorder(prefix string) *recorder {
	return &recorder{prefix: prefix, notify: make(chan struct{}, 1)}
}

func (r *recorder) ID() string {
	if r.id != "" {
		return r.id
	}
	return "recorder"
}

func (r *recorder) Provides(b byte) bool { return b == mqtt.OnPublished }

func (r *recorder) OnPublished(_ *mqtt.Client, pk packets.Packet) {
	if !strings.HasPrefix(pk.TopicName, r.prefix) {
		return
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, message{Topic: pk.TopicName, Payload: bytes.Clone(pk.Payload)})
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) messages() []message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]message(nil), r.msgs...)
}

// waitFor waits until cond holds over the recorded messages.
func (r *recorder) waitFor(t *testing.T, what string, cond func([]message) bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !cond(r.messages()) {
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("timed out waiting for %s (%d messages recorded)", what, len(r.messages()))
		}
	}
}

// startBroker runs an in-process mochi broker on addr (testenv.Mochi: limits
// raised so it never drops messages) with the given hooks. It stands for the
// collector's embedded broker, so it announces that its PUBACK means landed
// (agents run in ack mode auto).
func startBroker(t *testing.T, addr string, tlsCfg *tls.Config, hooks ...mqtt.Hook) (stop func()) {
	t.Helper()
	_, _, stop = testenv.Mochi(t, testenv.MochiConfig{Addr: addr, TLS: tlsCfg, Hooks: hooks, AnnouncePuback: true})
	return stop
}

func freeAddr(t *testing.T) string { return testenv.FreeAddr(t) }

// syncBuffer collects the agent's log for printing on failure.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runningAgent is the agent's run() on a goroutine.
type runningAgent struct {
	cancel context.CancelFunc
	done   chan int
	log    *syncBuffer
}

func startAgent(t *testing.T, args ...string) *runningAgent {
	t.Helper()
	return startAgentWith(t, options{}, args...)
}

// startAgentWith is startAgent with options (a fault-injecting fake bus).
func startAgentWith(t *testing.T, o options, args ...string) *runningAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{cancel: cancel, done: make(chan int, 1), log: &syncBuffer{}}
	noEnv := func(string) (string, bool) { return "", false }
	go func() { ra.done <- runWith(ctx, append([]string{"--log-format", "text"}, args...), noEnv, ra.log, o) }()
	t.Cleanup(func() {
		cancel()
		<-ra.done
		if t.Failed() {
			t.Logf("agent log:\n%s", ra.log.String())
		}
	})
	return ra
}

// stop signals the agent as SIGTERM would and returns its exit status.
func (ra *runningAgent) stop(t *testing.T) int {
	t.Helper()
	ra.cancel()
	select {
	case code := <-ra.done:
		ra.done <- code // for the cleanup
		return code
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop within 30 s")
		return -1
	}
}

type healthBody struct {
	Status string `json:"status"`
	Why    string `json:"why"`
	Sensor struct {
		OK        bool
		State     string
		LastError string
	} `json:"sensor"`
	MQTTConnected bool  `json:"mqtt_connected"`
	SpoolBatches  int64 `json:"spool_batches"`
}

// waitHealth polls the agent's /healthz (another component: polling with a
// deadline) until cond holds.
func waitHealth(t *testing.T, ra *runningAgent, addr, what string, cond func(healthBody) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var h healthBody
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
		}
		if err == nil && cond(h) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last health %+v, err %v)", what, h, err)
		}
		select {
		case code := <-ra.done:
			ra.done <- code
			t.Fatalf("agent exited with %d while waiting for %s", code, what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// scrape reads the agent's /metrics with Prometheus' text parser and
// returns each family's first value (a histogram's count).
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		m := f.GetMetric()[0]
		switch {
		case m.Counter != nil:
			out[name] = m.GetCounter().GetValue()
		case m.Gauge != nil:
			out[name] = m.GetGauge().GetValue()
		case m.Histogram != nil:
			out[name] = float64(m.GetHistogram().GetSampleCount())
		}
	}
	return out
}

func readSummary(t *testing.T, path string) Summary {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the summary file: %v", err)
	}
	var s Summary
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("parsing the summary file: %v\n%s", err, data)
	}
	return s
}

// testCA makes a CA and a server certificate for host, writes the CA to a
// PEM file and returns it with the server's TLS config.
func testCA(t *testing.T, host string) (caFile string, server *tls.Config) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pilake test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}},
	}
}

// testClientCert issues a client certificate from a fresh CA and returns the
// CA pool (for the server) and the cert/key PEM files (for the agent).
func testClientCert(t *testing.T, cn string) (pool *x509.CertPool, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(10), Subject: pkix.Name{CommonName: "pilake client CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(11), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(caCert)
	return pool, certFile, keyFile
}

func hexBoot(b uint64) string { return fmt.Sprintf("%016x", b) }
