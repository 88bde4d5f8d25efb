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
	"os"
	"strings"
	"testing"
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

// ChromiumFlags are the headless flags that work as root on this kind of machine.
var ChromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
}
