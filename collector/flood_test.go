package main

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/pilake/pilake/agent/wire"
)

// TestFloodWhileAgentsLand is issue 16's attack, small: while agents land,
// an attacker floods garbage, invented device ids, silent connections and
// topic tricks. The agents' data all lands; each limit bites and is counted;
// the process carries on.
func TestFloodWhileAgentsLand(t *testing.T) {
	cfg := testConfig(t)
	cfg.QuarantineRate, cfg.QuarantineBytesRate = 5, 1<<20
	cfg.NewDeviceRate, cfg.NewDeviceBurst = 1, 20
	cfg.MaxConnectionsPerSource = 60
	cfg.ConnectTimeout = 500 * time.Millisecond
	rc := startCollector(t, cfg)

	// Two agents, known to the collector before the flood (as a fleet
	// is through the stages' state at start-up).
	var agentsC []paho.Client
	for d := range 2 {
		dev := fmt.Sprintf("pi-%d", d)
		c := paho.NewClient(paho.NewClientOptions().AddBroker(rc.st.MQTT).SetClientID(dev))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		defer c.Disconnect(0)
		if tok := c.Publish(wire.TelemetryTopic(dev), 1, false, batchOf(t, dev, 1)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		agentsC = append(agentsC, c)
	}

	attacker := paho.NewClient(paho.NewClientOptions().AddBroker(rc.st.MQTT).SetClientID("attacker"))
	if tok := attacker.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("attacker: %v", tok.Error())
	}
	defer attacker.Disconnect(0)
	inventor := paho.NewClient(paho.NewClientOptions().AddBroker(rc.st.MQTT).SetClientID("inventor").
		SetConnectRetryInterval(20 * time.Millisecond).SetMaxReconnectInterval(50 * time.Millisecond))
	if tok := inventor.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("inventor: %v", tok.Error())
	}
	defer inventor.Disconnect(0)
	// The attacker's and inventor's own connections are made before the
	// silent ones fill the per-source limit, or either may be refused.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // silent connections
		defer wg.Done()
		var conns []net.Conn
		for range 100 {
			if c, err := net.Dial("tcp", strings.TrimPrefix(rc.st.MQTT, "tcp://")); err == nil {
				conns = append(conns, c)
			}
		}
		time.Sleep(time.Second)
		for _, c := range conns {
			c.Close()
		}
	}()
	wg.Add(1)
	go func() { // garbage, a topic trick
		defer wg.Done()
		c := attacker
		garbage := []byte("\x01" + strings.Repeat("garbage\u202e", 2000))
		for range 300 {
			c.Publish(wire.TelemetryTopic("pi-0"), 1, false, garbage).WaitTimeout(5 * time.Second)
		}
		c.Publish("pilake/v1/telemetry/pi-0/x", 1, false, batchOf(t, "pi-0", 99)).WaitTimeout(time.Second)
	}()
	wg.Add(1)
	go func() { // invented device ids: refused (and disconnected) beyond the rate
		defer wg.Done()
		c := inventor
		// QoS 0: nothing in flight for paho to resend when it reconnects
		// after a refusal; that resend races inside paho v1.5.1
		// (eclipse-paho/paho.mqtt.golang#703), which -race reports.
		for i := range 40 {
			dev := fmt.Sprintf("ghost-%d", i)
			c.Publish(wire.TelemetryTopic(dev), 0, false, batchOf(t, dev, 1)).WaitTimeout(300 * time.Millisecond)
			time.Sleep(10 * time.Millisecond) // a steady flood, not one burst the socket buffers
		}
	}()
	const per = 20
	for seq := uint64(2); seq <= per; seq++ {
		for d, c := range agentsC {
			dev := fmt.Sprintf("pi-%d", d)
			if tok := c.Publish(wire.TelemetryTopic(dev), 1, false, batchOf(t, dev, seq)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("agent %s seq %d: %v", dev, seq, tok.Error())
			}
		}
	}
	wg.Wait()

	_, metrics := get(t, rc.st.Metrics+"/metrics")
	// Every agent batch was acknowledged, so landed (the embedded broker
	// acknowledges after landing); besides them only the invented devices
	// admitted within the burst of 20 (less the agents' two).
	var batches int
	fmt.Sscanf(grepMetrics(metrics, "pilake_collector_batches_in_total "), "pilake_collector_batches_in_total %d", &batches)
	if batches < 2*per || batches > 2*per+20 {
		t.Errorf("%d batches landed, want the agents' %d and at most 20 invented devices'", batches, 2*per)
	}
	for _, limit := range []string{"quarantine", "new_devices", "acl", "connections_per_source"} {
		if !strings.Contains(metrics, `pilake_collector_limited_total{limit="`+limit+`"}`) ||
			strings.Contains(metrics, `pilake_collector_limited_total{limit="`+limit+`"} 0`+"\n") {
			t.Errorf("limit %s did not bite:\n%s", limit, grepMetrics(metrics, "limited"))
		}
	}
	rc.stop(t)
}

func batchOf(t *testing.T, device string, seq uint64) []byte {
	t.Helper()
	b := &wire.Batch{DeviceID: device, BootID: 1, Seq: seq, IntervalUS: 2500}
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC).UnixMicro()
	b.Readings = append(b.Readings, wire.Reading{TimeUS: t0, Temp: 2150, Press: 101325 * 256, Hum: 45 * 1024},
		wire.Reading{TimeUS: t0 + 2500, Temp: 2150, Press: 101325 * 256, Hum: 45 * 1024})
	data, err := wire.NewEncoder(wire.Binary).Append(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func grepMetrics(m string, names ...string) string {
	var out []string
	for _, l := range strings.Split(m, "\n") {
		for _, n := range names {
			if strings.Contains(l, n) && !strings.HasPrefix(l, "#") {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}
