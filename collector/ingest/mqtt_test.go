package ingest_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/ingest"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"

	"github.com/pilake/pilake/internal/testwait"
	"github.com/pilake/pilake/scripts/testenv"
)

var quiet = slog.New(slog.DiscardHandler)

func encodeBatch(t testing.TB, enc wire.Encoding, device string, boot, seq uint64, n int) []byte {
	t.Helper()
	b := &wire.Batch{DeviceID: device, BootID: boot, Seq: seq, IntervalUS: 2500}
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC).UnixMicro() + int64(seq)*int64(n)*2500
	for i := range n {
		b.Readings = append(b.Readings, wire.Reading{TimeUS: t0 + int64(i)*2500, Temp: 2150, Press: 101325 * 256, Hum: 45 * 1024, Fresh: true})
	}
	data, err := wire.NewEncoder(enc).Append(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func newLander(t *testing.T) *landing.Lander {
	t.Helper()
	lk, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ld, err := landing.New(landing.Options{Lake: lk, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return ld
}

func mqttHandler(ld *landing.Lander) ingest.Handler {
	return func(ctx context.Context, topic string, payload []byte) error {
		dev, _ := wire.DeviceFromTopic(topic)
		_, err := ld.Land(ctx, landing.Message{Data: payload, Source: "mqtt", Topic: topic, Device: dev})
		return err
	}
}

// startIngest runs an MQTT ingest until the test ends (or stop is called)
// and returns once it has subscribed.
func startIngest(t *testing.T, opts ingest.MQTTOptions) (stop func()) {
	t.Helper()
	ready := make(chan struct{})
	var once sync.Once
	opts.OnConnect = func() { once.Do(func() { close(ready) }) }
	opts.Logger = quiet
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ingest.RunMQTT(ctx, opts) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("ingest ended before subscribing: %v", err)
	}
	var stopOnce sync.Once
	stop = func() {
		stopOnce.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("ingest: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func publisher(t *testing.T, url string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("pub-%d", rand.Uint32())))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connecting publisher: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// publish sends devices×per batches (each twice when dup) with QoS 1 and
// waits for the broker's acknowledgements.
func publish(t *testing.T, c paho.Client, boot uint64, devices, per int, dup bool) {
	t.Helper()
	var toks []paho.Token
	for d := range devices {
		dev := fmt.Sprintf("pi-%d", d)
		for s := 1; s <= per; s++ {
			data := encodeBatch(t, wire.Binary, dev, boot, uint64(s), 40)
			toks = append(toks, c.Publish(wire.TelemetryTopic(dev), 1, false, data))
			if dup {
				toks = append(toks, c.Publish(wire.TelemetryTopic(dev), 1, false, data))
			}
		}
	}
	for _, tok := range toks {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publishing: %v", tok.Error())
		}
	}
}

func TestMQTTIngestMosquittoDedup(t *testing.T) {
	url := testenv.PrivateMosquitto(t)
	ld := newLander(t)
	startIngest(t, ingest.MQTTOptions{Broker: url, ClientID: fmt.Sprintf("collector-%d", rand.Uint32()), Handler: mqttHandler(ld)})
	const devices, per = 5, 20
	publish(t, publisher(t, url), rand.Uint64(), devices, per, true)
	testwait.Until(t, "every batch landed and every duplicate seen", func() bool {
		return ld.Stats().Batches.Load()+ld.Stats().Duplicates.Load() == 2*devices*per
	})
	if got := ld.Stats().Batches.Load(); got != devices*per {
		t.Fatalf("landed %d batches, want %d (each delivered twice, landed once)", got, devices*per)
	}
}

func TestMQTTSharedSubscription(t *testing.T) {
	url := testenv.PrivateMosquitto(t)
	ld := newLander(t) // both collectors land into one lake
	group := fmt.Sprintf("g%d", rand.Uint32())
	var mu sync.Mutex
	perCollector := map[string]int{}
	for _, name := range []string{"a", "b"} {
		h := mqttHandler(ld)
		startIngest(t, ingest.MQTTOptions{Broker: url, ClientID: fmt.Sprintf("collector-%s-%d", name, rand.Uint32()), ShareGroup: group,
			Handler: func(ctx context.Context, topic string, payload []byte) error {
				mu.Lock()
				perCollector[name]++
				mu.Unlock()
				return h(ctx, topic, payload)
			}})
	}
	const devices, per = 4, 25
	publish(t, publisher(t, url), rand.Uint64(), devices, per, false)
	testwait.Until(t, "every batch landed", func() bool { return ld.Stats().Batches.Load() == devices*per })
	mu.Lock()
	defer mu.Unlock()
	if perCollector["a"]+perCollector["b"] != devices*per || perCollector["a"] == 0 || perCollector["b"] == 0 {
		t.Fatalf("deliveries per collector %v: want the %d batches split over both, each once", perCollector, devices*per)
	}
}

func TestMQTTSessionKeepsMessagesWhileDown(t *testing.T) {
	url := testenv.PrivateMosquitto(t)
	ld := newLander(t)
	opts := ingest.MQTTOptions{Broker: url, ClientID: fmt.Sprintf("collector-%d", rand.Uint32()), Handler: mqttHandler(ld)}
	stop := startIngest(t, opts)
	stop() // the collector is down; its session stays with the broker
	const devices, per = 3, 10
	publish(t, publisher(t, url), rand.Uint64(), devices, per, false)
	startIngest(t, opts)
	testwait.Until(t, "batches published while the collector was down", func() bool { return ld.Stats().Batches.Load() == devices*per })
}
