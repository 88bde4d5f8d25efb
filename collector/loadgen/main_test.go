package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/broker"

	"github.com/pilake/pilake/scripts/testenv"
)

func smallConfig(url string) config {
	return config{broker: url, devices: 3, rate: 400, batch: time.Second, seconds: 2, window: 2,
		encoding: "binary", metric: "pilake_collector_bronze_readings_total", timeout: time.Minute}
}

// TestGenerate publishes through a real (embedded) broker; every batch
// arrives once, decodes, and belongs to the device of its topic.
func TestGenerate(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	b, err := broker.New(t.Context(), broker.Options{Addr: "127.0.0.1:0", TopicPrefix: "pilake/v1/telemetry/", Logger: slog.New(slog.DiscardHandler),
		Handler: func(_ context.Context, _, topic string, payload []byte) error {
			var bt wire.Batch
			if err := wire.Decode(payload, &bt); err != nil {
				t.Errorf("batch on %s: %v", topic, err)
				return nil
			}
			if dev, _ := wire.DeviceFromTopic(topic); dev != bt.DeviceID || len(bt.Readings) != 400 {
				t.Errorf("batch of %s with %d readings on %s", bt.DeviceID, len(bt.Readings), topic)
			}
			mu.Lock()
			seen[bt.Key()]++
			mu.Unlock()
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	var out bytes.Buffer
	if err := generate(t.Context(), smallConfig(b.URL()), slog.New(slog.DiscardHandler), &out); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 6 {
		t.Fatalf("broker saw %d distinct batches, want 6", len(seen))
	}
	for _, want := range []string{"readings_per_s=", "bytes_per_reading="} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output %q lacks %s", out.String(), want)
		}
	}
}

// TestRawMove runs the baseline's plain subscriber through Mosquitto.
func TestRawMove(t *testing.T) {
	c := smallConfig(testenv.PrivateMosquitto(t))
	c.rawSub, c.rawDir, c.prefix = true, t.TempDir(), "raw_move_"
	var out bytes.Buffer
	if err := generate(t.Context(), c, slog.New(slog.DiscardHandler), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "raw_move_readings_per_s=") {
		t.Fatalf("output %q", out.String())
	}
}
