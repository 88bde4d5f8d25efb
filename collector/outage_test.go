package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing/landingtest"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/internal/testwait"
	"github.com/pilake/pilake/scripts/testenv"
)

// switchProxy forwards TCP to a backend and can be switched off: then it
// drops every connection, like a storage endpoint during an outage.
type switchProxy struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	down    bool
	conns   map[net.Conn]bool
}

func newSwitchProxy(t *testing.T, backend string) *switchProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{ln: ln, backend: backend, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.setDown(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.down {
				p.mu.Unlock()
				c.Close()
				continue
			}
			b, err := net.Dial("tcp", backend)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns[c], p.conns[b] = true, true
			p.mu.Unlock()
			go func() { io.Copy(b, c); b.Close() }()
			go func() { io.Copy(c, b); c.Close() }()
		}
	}()
	return p
}

func (p *switchProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]bool{}
	}
}

// TestAzureOutageBackPressure: while the lake is unreachable nothing is
// acknowledged (the agent keeps its batches); afterwards everything lands,
// and nothing acknowledged is lost.
func TestAzureOutageBackPressure(t *testing.T) {
	az := testenv.AzuriteBlob(t)
	u, err := url.Parse(az.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newSwitchProxy(t, u.Host)
	cfg := testConfig(t)
	cfg.Lake = ""
	cfg.AzureAccount, cfg.AzureKey = az.Account, az.Key
	cfg.AzureEndpoint = "http://" + proxy.ln.Addr().String() + u.Path
	cfg.AzureContainer = fmt.Sprintf("outage-%d", rand.Uint32())
	rc := startCollector(t, cfg)

	c := paho.NewClient(paho.NewClientOptions().AddBroker(rc.st.MQTT).SetClientID("agent-outage").
		SetCleanSession(false).SetAutoReconnect(true).SetMaxReconnectInterval(100 * time.Millisecond).SetWriteTimeout(0))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(0)
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	publish := func(seq uint64) paho.Token {
		return c.Publish(wire.TelemetryTopic("pi-o"), 1, false, encode(t, "pi-o", 3, seq, 400, t0))
	}
	for s := uint64(1); s <= 3; s++ {
		if tok := publish(s); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("before the outage: %v", tok.Error())
		}
	}

	proxy.setDown(true)
	var during []paho.Token
	for s := uint64(4); s <= 6; s++ {
		during = append(during, publish(s))
	}
	// Wait until the collector has retried the lake a few times.
	deadline := time.Now().Add(testwait.Deadline)
	testwait.Until(t, "lake retries during the outage", func() bool {
		_, m := get(t, rc.st.Metrics+"/metrics")
		return metricValue(m, `pilake_collector_lake_errors_total{kind="retried"}`) >= 3
	})
	for i, tok := range during {
		select {
		case <-tok.Done():
			t.Fatalf("batch %d acknowledged while the lake was down (err %v)", i+4, tok.Error())
		default:
		}
	}
	proxy.setDown(false)
	// Back: everything lands. (paho may complete a token early after a
	// reconnect, so check the lake, not only the tokens.)
	for _, tok := range during {
		tok.WaitTimeout(60 * time.Second)
	}
	for {
		_, m := get(t, rc.st.Metrics+"/metrics")
		if metricValue(m, "pilake_collector_batches_in_total") == 6 {
			break
		}
		if time.Now().After(deadline.Add(60 * time.Second)) {
			t.Fatal("batches published during the outage never landed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	rc.stop(t)
	lk, err := lake.NewAzure(t.Context(), cfg.azureOptions(cfg.AzureContainer))
	if err != nil {
		t.Fatal(err)
	}
	if got := landingtest.Copies(t, lk); len(got) != 6 {
		t.Fatalf("landing holds %d batches of pi-o (%v), want 6", len(got), got)
	}
	bronze, err := delta.ReadTable[schema.BronzeRow](t.Context(), lk, schema.Bronze, nil)
	if err != nil || len(bronze) != 6*400 {
		t.Fatalf("bronze has %d rows (%v), want %d", len(bronze), err, 6*400)
	}
}

func metricValue(metrics, name string) float64 {
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}
