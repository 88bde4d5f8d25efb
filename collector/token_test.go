package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/broker"
)

func TestDeviceTokenSubcommand(t *testing.T) {
	var key, out, errOut bytes.Buffer
	if ok, err := subcommand([]string{"fleet-key"}, &key, &errOut, time.Now()); !ok || err != nil {
		t.Fatalf("fleet-key: %v %v", ok, err)
	}
	kf := filepath.Join(t.TempDir(), "fleet.key")
	if err := os.WriteFile(kf, key.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	if ok, err := subcommand([]string{"device-token", "--fleet-key-file", kf, "--device", "pi-1", "--ttl", "720h"}, &out, &errOut, now); !ok || err != nil {
		t.Fatalf("device-token: %v %v", ok, err)
	}
	var user, pass string
	for _, line := range strings.Split(out.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "username = "); ok {
			user = v
		}
		if v, ok := strings.CutPrefix(line, "password = "); ok {
			pass = v
		}
	}
	k, err := readFleetKey(kf)
	if err != nil {
		t.Fatal(err)
	}
	role, exp, err := broker.VerifyToken(k, user, pass, now.Add(719*time.Hour))
	if err != nil || role != broker.RoleDevice || !exp.Equal(now.Add(720*time.Hour)) || user != "pi-1" {
		t.Fatalf("issued %q/%q: role %q expiry %v err %v", user, pass, role, exp, err)
	}
	if _, _, err := broker.VerifyToken(k, user, pass, now.Add(721*time.Hour)); err == nil {
		t.Error("token valid after its ttl")
	}
	if ok, err := subcommand([]string{"device-token", "--fleet-key-file", kf, "--device", "bad/id"}, &out, &errOut, now); !ok || err == nil {
		t.Error("a bad device id got a token")
	}
	if ok, _ := subcommand([]string{"--lake", "x"}, &out, &errOut, now); ok {
		t.Error("flags taken for a subcommand")
	}
}

func TestExposedListenNeedsTLSAndAuth(t *testing.T) {
	env := func(string) (string, bool) { return "", false }
	if _, err := loadConfig([]string{"--listen", "0.0.0.0:8883"}, env, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "beyond loopback") {
		t.Errorf("0.0.0.0 without TLS and auth: %v", err)
	}
	if _, err := loadConfig([]string{"--listen", "0.0.0.0:8883", "--tls-cert", "c", "--tls-key", "k", "--fleet-key-file", "f"}, env, &bytes.Buffer{}); err != nil {
		t.Errorf("0.0.0.0 with TLS and a fleet key: %v", err)
	}
}

// TestMetricsHostCheck: /metrics refuses a Host header that is not one of
// its names (DNS rebinding) and counts it.
func TestMetricsHostCheck(t *testing.T) {
	rc := startCollector(t, testConfig(t))
	get := func(host string) (int, string) {
		req, _ := http.NewRequest("GET", rc.st.Metrics+"/metrics", nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("rebound.attacker.example"); code != http.StatusMisdirectedRequest {
		t.Errorf("foreign Host: %d, want 421", code)
	}
	code, body := get("")
	if code != 200 || !strings.Contains(body, `pilake_collector_limited_total{limit="host"} 1`) {
		t.Errorf("own Host: %d, host refusals not counted", code)
	}
}
