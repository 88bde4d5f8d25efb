package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNoSecretsInLogsOrMetrics runs the collector with every kind of
// credential set, against endpoints that fail (so that errors quoting URLs
// are logged), and greps its log and /metrics for the secrets.
func TestNoSecretsInLogsOrMetrics(t *testing.T) {
	const (
		sasSig   = "SASSIGNATURESECRET"
		acctKey  = "QUNDT1VOVEtFWVNFQ1JFVA=="
		mqttPass = "MQTTPASSWORDSECRET"
		fleet    = "FLEETKEYSECRET-0123456789abcdef0123456789"
	)
	secrets := []string{sasSig, acctKey, mqttPass, fleet, "QUNDT1VOVEtFWVNFQ1JFVA"}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "fleet.key")
	if err := os.WriteFile(keyFile, []byte(fleet), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	// Nothing listens on these ports (the test's own range).
	const deadAzure = "http://127.0.0.1:28991/devstoreaccount1"
	const deadBroker = "tcp://pilake:" + mqttPass + "@127.0.0.1:28992"

	runFor := func(cfg Config, d time.Duration, scrape bool) {
		cfg.LogFormat = "json"
		log := cfg.logger(logFile)
		ctx, cancel := context.WithTimeout(t.Context(), d)
		defer cancel()
		metrics := make(chan string, 1)
		_ = run(ctx, cfg, log, func(s started) {
			if !scrape || s.Metrics == "" {
				return
			}
			time.Sleep(300 * time.Millisecond) // let the external broker connection fail a few times
			resp, err := http.Get(s.Metrics + "/metrics")
			if err != nil {
				t.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			metrics <- string(body)
		})
		if scrape {
			select {
			case m := <-metrics:
				for _, s := range secrets {
					if strings.Contains(m, s) {
						t.Errorf("/metrics holds a secret %q", s)
					}
				}
			default:
				t.Error("no metrics scraped")
			}
		}
	}

	// Azure lake with a SAS, unreachable: the SDK's url.Error quotes the URL.
	c := testConfig(t)
	c.AzureContainer, c.AzureEndpoint, c.AzureSAS = "lake", deadAzure, "sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&se=2030-01-01T00:00:00Z&sig="+sasSig
	c.FleetKeyFile = keyFile
	runFor(c, time.Second, false)
	// Azure lake with a connection string holding the account key.
	c = testConfig(t)
	c.AzureContainer = "lake"
	c.AzureConnectionString = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + acctKey + ";BlobEndpoint=" + deadAzure + ";"
	runFor(c, time.Second, false)
	// An external broker whose URL and password carry a secret, unreachable.
	c = testConfig(t)
	c.Broker, c.MQTTUsername, c.MQTTPassword = deadBroker, "pilake", mqttPass
	runFor(c, 1500*time.Millisecond, true)

	logs, err := os.ReadFile(logFile.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logs), "127.0.0.1:28991") || !strings.Contains(string(logs), "127.0.0.1:28992") {
		t.Fatalf("the failures were not logged (the test would prove nothing):\n%s", logs)
	}
	for _, s := range secrets {
		if strings.Contains(string(logs), s) {
			t.Errorf("the log holds the secret %q:\n%s", s, logs)
		}
	}
}
