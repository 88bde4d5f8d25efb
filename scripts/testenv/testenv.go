// Package testenv hands integration tests the real services that
// scripts/test.sh installs and starts (Mosquitto, Azurite, Chromium).
//
// Each service is announced by an environment variable. When it is unset the
// test is skipped, unless PILAKE_TEST_REQUIRE=1 (set by scripts/test.sh and so
// by CI), in which case it fails: CI never passes by skipping an integration test.
//
//	PILAKE_TEST_MOSQUITTO  tcp://127.0.0.1:18830
//	PILAKE_TEST_AZURITE    http://127.0.0.1:10010/devstoreaccount1  (Blob endpoint)
//	PILAKE_TEST_CHROMIUM   /usr/bin/chromium
//
// Start them by hand for a local run with `eval "$(scripts/services.sh start)"`.
package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pilake/pilake/internal/chromium"
)

// AzuriteAccount and AzuriteKey are Azurite's well-known development credentials.
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Required reports whether missing services must fail tests (PILAKE_TEST_REQUIRE=1).
func Required() bool { return os.Getenv("PILAKE_TEST_REQUIRE") == "1" }

func need(t testing.TB, env, what string) string {
	t.Helper()
	v := os.Getenv(env)
	if v != "" {
		return v
	}
	if Required() {
		t.Fatalf("%s is not set: %s is required (PILAKE_TEST_REQUIRE=1); run scripts/test.sh or eval \"$(scripts/services.sh start)\"", env, what)
	}
	t.Skipf("%s not set: skipping test that needs %s (scripts/test.sh sets it)", env, what)
	return ""
}

// Mosquitto returns the URL (tcp://host:port) of a running Mosquitto broker.
func Mosquitto(t testing.TB) string {
	t.Helper()
	return need(t, "PILAKE_TEST_MOSQUITTO", "a Mosquitto broker")
}

// Azurite describes a running Azurite Blob service.
type Azurite struct {
	Endpoint string // e.g. http://127.0.0.1:10010/devstoreaccount1
	Account  string
	Key      string
}

// ConnectionString returns an Azure Storage connection string for the service.
func (a Azurite) ConnectionString() string {
	return "DefaultEndpointsProtocol=http;AccountName=" + a.Account + ";AccountKey=" + a.Key +
		";BlobEndpoint=" + strings.TrimSuffix(a.Endpoint, "/") + ";"
}

// AzuriteBlob returns the running Azurite Blob service.
func AzuriteBlob(t testing.TB) Azurite {
	t.Helper()
	ep := need(t, "PILAKE_TEST_AZURITE", "Azurite (Azure Blob emulator)")
	return Azurite{Endpoint: ep, Account: AzuriteAccount, Key: AzuriteKey}
}

// Chromium returns the path of a Chromium executable.
func Chromium(t testing.TB) string {
	t.Helper()
	if v := os.Getenv("PILAKE_TEST_CHROMIUM"); v != "" {
		return v
	}
	return need(t, "PILAKE_TEST_CHROMIUM", "Chromium")
}

// ChromiumFlags are the headless flags that work as root on this kind of
// machine (internal/chromium's, shared with dashboard/latencybench).
var ChromiumFlags = chromium.Flags

// PrivateMosquitto starts a Mosquitto of the test's own on a free port and
// returns its URL, so that messages other packages' tests publish on the
// shared broker (on the same topics) never reach this test's subscribers.
// It needs the shared broker's announcement (to decide skip or fail, like
// Mosquitto) and the mosquitto binary (PILAKE_MOSQUITTO_BIN, default
// /usr/sbin/mosquitto); without the binary it falls back to the shared broker.
// The broker is killed when the test ends.
func PrivateMosquitto(t testing.TB) string {
	t.Helper()
	shared := Mosquitto(t)
	bin := os.Getenv("PILAKE_MOSQUITTO_BIN")
	if bin == "" {
		bin = "/usr/sbin/mosquitto"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Logf("no %s: using the shared broker %s", bin, shared)
		return shared
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"+
		"max_queued_messages 200000\nlog_dest stderr\nlog_type error\n", port)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "tcp://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("private mosquitto did not start on %s", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
