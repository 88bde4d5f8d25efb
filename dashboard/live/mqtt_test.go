package live

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/scripts/testenv"
)

// startMochi runs an in-process broker (the collector embeds the same one).
func startMochi(t *testing.T) (*mochi.Server, func(), string) {
	t.Helper()
	s, url, stop := testenv.Mochi(t, testenv.MochiConfig{InlineClient: true})
	return s, stop, url
}

// waitStatus waits (on the hub's signal) until the upstream reports live.
func waitStatus(t *testing.T, hub *Hub, live string) {
	t.Helper()
	sig, stop := hub.Subscribe()
	defer stop()
	timeout := time.After(15 * time.Second)
	for hub.Status().Live != live {
		select {
		case <-sig:
		case <-timeout:
			t.Fatalf("upstream status %+v, want %s", hub.Status(), live)
		}
	}
}

func publisher(t *testing.T, broker string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID(fmt.Sprintf("pub-%d", time.Now().UnixNano())))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func liveJSON(t *testing.T, dev string, captureUS int64) []byte {
	t.Helper()
	lu := schema.LiveUpdate{Device: dev, NewestCaptureUS: captureUS, PublishedUS: captureUS + 5000,
		Silver: []schema.LiveSilver{{SilverRow: schema.SilverRow{Device: dev, WindowStart: captureUS / 1e6 * 1e6, WindowEnd: captureUS/1e6*1e6 + 1e6,
			Count: 400, TempAvg: 21.5, HumidityAvg: schema.Float(40), PressureAvg: schema.Float(101325)}}},
		Gold: []schema.GoldRow{{Device: dev, WindowStart: captureUS / 1e6 * 1e6, N: 8, Windows: 8, TempC: 21.4, HumidityRH: schema.Float(40.1), PressurePa: schema.Float(101320)}}}
	b, err := json.Marshal(lu)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fanout checks that several browsers share one upstream subscription and
// all get every update, and that bad messages are dropped, not forwarded.
func fanout(t *testing.T, broker, dev string) *MQTTStats {
	hub := NewHub(1024, nil)
	stats := &MQTTStats{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunMQTT(ctx, MQTTOptions{Broker: broker}, hub, stats) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunMQTT: %v", err)
		}
	})
	waitStatus(t, hub, "online")

	mux := http.NewServeMux()
	mux.Handle("/api/live", &SSE{Hub: hub})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	var clients []<-chan event
	for i := 0; i < 3; i++ {
		ev := stream(t, srv.URL, "?device="+dev, nil)
		next(t, ev, "status")
		clients = append(clients, ev)
	}

	pub := publisher(t, broker)
	capture := time.Now().UnixMicro()
	for _, m := range [][]byte{[]byte("{garbage"), liveJSON(t, "someone-else", capture), liveJSON(t, dev, capture)} {
		if tok := pub.Publish(wire.LiveTopic(dev), 0, false, m); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	for i, ev := range clients {
		got := liveUpdates(t, next(t, ev, "live"))
		if len(got) != 1 || got[0].Device != dev || got[0].CaptureMS != float64(capture)/1000 ||
			got[0].Silver.Len() != 1 || got[0].Gold.Len() != 1 || got[0].Gold.TempC[0] != 21.4 {
			t.Errorf("client %d got %+v", i, got)
		}
	}
	return stats
}

func TestMQTTFanoutMochi(t *testing.T) {
	srv, _, broker := startMochi(t)
	stats := fanout(t, broker, "dev-a")
	// one dashboard subscription whatever the number of browsers
	if n := len(srv.Topics.Subscribers(wire.LiveTopic("dev-a")).Subscriptions); n != 1 {
		t.Errorf("%d broker subscriptions on the live topic, want 1", n)
	}
	if got := stats.Rejected.Load(); got != 2 {
		t.Errorf("rejected %d messages, want 2 (garbage, wrong device)", got)
	}
}

func TestMQTTFanoutMosquitto(t *testing.T) {
	broker := testenv.Mosquitto(t)
	fanout(t, broker, fmt.Sprintf("dash-test-%d", time.Now().UnixNano()))
}

func TestMQTTBrokerGoesAway(t *testing.T) {
	_, stopBroker, broker := startMochi(t)
	hub := NewHub(16, nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = RunMQTT(ctx, MQTTOptions{Broker: broker}, hub, nil) }()
	waitStatus(t, hub, "online")
	stopBroker()
	waitStatus(t, hub, "offline")
	if hub.Status().Detail == "" {
		t.Error("offline without a reason")
	}
}
