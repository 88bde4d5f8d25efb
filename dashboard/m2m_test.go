package main

import (
	"bufio"
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
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pilake/pilake/dashboard/internal/dbsqltest"
	"github.com/pilake/pilake/dashboard/internal/sqltest"
)

// TestM2MHelperProcess is the dashboard that TestDatabricksOAuthM2M runs as
// a child process (so that the proxy and CA settings below apply to it
// alone); it does nothing in a normal test run.
func TestM2MHelperProcess(t *testing.T) {
	if os.Getenv("PILAKE_M2M_HELPER") != "1" {
		t.Skip("the child process of TestDatabricksOAuthM2M")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ready := make(chan string, 1)
	go func() { fmt.Println("READY " + <-ready) }()
	if err := run(ctx, []string{"--listen", "127.0.0.1:0", "--source", "databricks", "--log-level", "debug"}, os.LookupEnv, os.Stderr, ready); err != nil {
		t.Fatal(err)
	}
}

// TestDatabricksOAuthM2M runs the dashboard with a service principal's
// CLIENT_ID and CLIENT_SECRET against a workspace host name: the driver's
// own OAuth M2M fetches a token from the workspace's token endpoint and
// sends it on every Thrift call to the SQL warehouse. The workspace is a
// stand-in (nothing Databricks can run here): one TLS server under an
// azuredatabricks.net name (trusted through SSL_CERT_FILE, reached through
// an HTTPS_PROXY that tunnels every CONNECT to it), serving the token
// endpoint and the stand-in warehouse.
func TestDatabricksOAuthM2M(t *testing.T) {
	const (
		host     = "adb-1234567890123456.7.azuredatabricks.net"
		clientID = "0a1b2c3d-sp-app-id"
		secret   = "dose-M2M-SECRET-4f3e"
		access   = "eyJ-m2m-access-token"
	)
	dir := t.TempDir()
	caFile, leaf := testPKI(t, dir, host)

	db := sqltest.Open(t)
	ws := time.Now().Add(-10 * time.Minute).Truncate(time.Second).UnixMicro()
	sqltest.InsertSilver(t, db, sqltest.Silver("dev-a", ws, 21, 40, 101000))
	sqltest.InsertGold(t, db, sqltest.Gold("dev-a", ws, 8, 21.5, 40, 101000))
	wh := dbsqltest.NewHandler(t, db, access)

	var mu sync.Mutex
	var tokenForms []string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oidc/oauth2/v2.0/token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		id, sec, ok := r.BasicAuth()
		if !ok {
			id, sec = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		mu.Lock()
		tokenForms = append(tokenForms, r.PostForm.Get("grant_type")+" "+r.PostForm.Get("scope"))
		mu.Unlock()
		if r.PostForm.Get("grant_type") != "client_credentials" || id != clientID || sec != secret {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": access, "token_type": "Bearer", "expires_in": 3600})
	})
	mux.Handle("/", wh)
	workspace := httptest.NewUnstartedServer(mux)
	workspace.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}}
	workspace.StartTLS()
	t.Cleanup(workspace.Close)

	var connects []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		mu.Lock()
		connects = append(connects, r.Host)
		mu.Unlock()
		up, err := net.Dial("tcp", workspace.Listener.Addr().String())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			up.Close()
			return
		}
		_, _ = conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
		go func() { _, _ = io.Copy(up, buf); up.Close() }()
		_, _ = io.Copy(conn, up)
		conn.Close()
	}))
	t.Cleanup(proxy.Close)

	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR":
			continue
		}
		if strings.HasPrefix(k, "DATABRICKS_") || k == "ACCESS_TOKEN" || k == "SERVER_HOSTNAME" || k == "HTTP_PATH" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "PILAKE_M2M_HELPER=1", "HTTPS_PROXY="+proxy.URL, "SSL_CERT_FILE="+caFile,
		"SERVER_HOSTNAME="+host, "HTTP_PATH=/sql/1.0/warehouses/test", "CLIENT_ID="+clientID, "CLIENT_SECRET="+secret)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestM2MHelperProcess$", "-test.count=1", "-test.v")
	cmd.Env = env
	var stderr syncBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var base string
	var childOut strings.Builder
	for sc.Scan() {
		childOut.WriteString(sc.Text() + "\n")
		if b, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
			base = b
			break
		}
	}
	if base == "" {
		_ = cmd.Wait()
		t.Fatalf("the dashboard did not start:\n%s\n%s", childOut.String(), stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()

	var seen strings.Builder
	for _, p := range []string{"api/devices", "api/series?range=1h"} {
		code, body, _ := get(t, http.DefaultClient, base+p)
		seen.WriteString(body)
		if code != http.StatusOK || !strings.Contains(body, "dev-a") {
			t.Errorf("%s: %d %s\nlogs:\n%s", p, code, body, stderr.String())
		}
	}
	_ = cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Errorf("dashboard: %v\n%s", err, stderr.String())
	}

	mu.Lock()
	defer mu.Unlock()
	if len(tokenForms) == 0 || tokenForms[0] != "client_credentials all-apis" {
		t.Errorf("token requests %q: want client_credentials with scope all-apis", tokenForms)
	}
	if len(connects) == 0 || !strings.HasPrefix(connects[0], host+":443") {
		t.Errorf("proxied connections %q: want %s:443", connects, host)
	}
	stmts := wh.Statements()
	t.Logf("token requests %q, proxied %q, %d statements", tokenForms, connects, len(stmts))
	if len(stmts) < 3 {
		t.Errorf("%d statements reached the warehouse with the M2M token, want devices and both series", len(stmts))
	}
	if strings.Contains(stderr.String(), `"message":`) {
		t.Errorf("the driver's zerolog output reached stderr:\n%s", stderr.String())
	}
	for what, s := range map[string]string{"responses": seen.String(), "logs": stderr.String()} {
		if strings.Contains(s, secret) || strings.Contains(s, access) {
			t.Errorf("the client secret or access token leaked into the %s", what)
		}
	}
}

// testPKI writes a CA certificate to dir and returns its file and a server
// certificate for host signed by it.
func testPKI(t *testing.T, dir, host string) (string, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pilake test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
