package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/pilake/pilake/agent/wire"
)

// TestGapsVisible: batches 1, 2 and 5 of a boot land; /healthz/gaps names
// the missing 3-4 and pilake_collector_missing_batches counts them.
func TestGapsVisible(t *testing.T) {
	cfg := testConfig(t)
	rc := startCollector(t, cfg)
	c := paho.NewClient(paho.NewClientOptions().AddBroker(rc.st.MQTT).SetClientID("gappy"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(0)
	t0 := time.Now().Add(-time.Minute)
	for _, seq := range []uint64{1, 2, 5} {
		tok := c.Publish(wire.TelemetryTopic("pi-gap"), 1, false, encode(t, "pi-gap", 7, seq, 10, t0.Add(time.Duration(seq)*time.Second)))
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body := get(t, rc.st.Metrics+"/healthz/gaps")
		_, metrics := get(t, rc.st.Metrics+"/metrics")
		if strings.TrimSpace(body) == fmt.Sprintf(`{"pi-gap/%016x":[[3,4]]}`, 7) &&
			strings.Contains(metrics, `pilake_collector_missing_batches{device="pi-gap"} 2`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz/gaps %s; metrics lack missing_batches 2", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
