package main

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/scripts/testenv"
)

// TestRealMosquitto runs the agent against the Mosquitto that scripts/test.sh
// starts (PILAKE_TEST_MOSQUITTO) and checks, with a QoS 1 subscriber, that
// every reading the agent reports acknowledged arrived exactly once.
func TestRealMosquitto(t *testing.T) {
	broker := testenv.Mosquitto(t)
	device := fmt.Sprintf("pi-mosq-%d", time.Now().UnixNano()%1e9)

	var mu sync.Mutex
	var msgs []message
	got := make(chan struct{}, 1)
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(device + "-sub").SetCleanSession(true))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connecting to %s: %v", broker, tok.Error())
	}
	t.Cleanup(func() { sub.Disconnect(100) })
	tok := sub.Subscribe(wire.TelemetryTopic(device), 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		msgs = append(msgs, message{Topic: m.Topic(), Payload: append([]byte(nil), m.Payload()...)})
		mu.Unlock()
		select {
		case got <- struct{}{}:
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribing: %v", tok.Error())
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(msgs) }

	dir := t.TempDir()
	summary := filepath.Join(dir, "summary.json")
	ra := startAgent(t, "--simulate", "--device-id", device, "--broker", broker,
		"--spool-dir", filepath.Join(dir, "spool"), "--metrics-addr", "", "--summary-file", summary, "--batch-interval", "250ms",
		"--ack-mode", "puback") // no collector behind this broker: its PUBACK is the test's subject
	deadline := time.After(30 * time.Second)
	for count() < 4 {
		select {
		case <-got:
		case <-deadline:
			t.Fatalf("only %d batches through Mosquitto in 30 s", count())
		}
	}
	if code := ra.stop(t); code != 0 {
		t.Fatalf("agent exited with %d", code)
	}
	sum := readSummary(t, summary)
	// The subscriber may get the last acknowledged batch just after the
	// agent's PUBACK: wait until it has them all.
	deadline = time.After(10 * time.Second)
	for int64(count()) < sum.BatchesAcked {
		select {
		case <-got:
		case <-deadline:
			t.Fatalf("subscriber has %d batches, agent saw %d acknowledged", count(), sum.BatchesAcked)
		}
	}
	mu.Lock()
	all := append([]message(nil), msgs...)
	mu.Unlock()
	checkExact(t, sum, decodeAll(t, all))
}
