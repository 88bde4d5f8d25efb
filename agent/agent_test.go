package main

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/pilake/pilake/agent/wire"
)

// decodeAll decodes recorded batches and keys them by device/boot/seq, as
// the collector's idempotent landing does; redeliveries of one key must be
// identical.
func decodeAll(t *testing.T, msgs []message) map[string]*wire.Batch {
	t.Helper()
	out := map[string]*wire.Batch{}
	raw := map[string][]byte{}
	for _, m := range msgs {
		b := new(wire.Batch)
		if err := wire.Decode(m.Payload, b); err != nil {
			t.Fatalf("decoding a published batch on %s: %v", m.Topic, err)
		}
		k := b.Key()
		if prev, ok := raw[k]; ok && !slices.Equal(prev, m.Payload) {
			t.Fatalf("batch %s delivered twice with different content", k)
		}
		raw[k] = m.Payload
		out[k] = b
	}
	return out
}

// checkExact checks the agent's summary against what the broker recorded:
// every sampled reading of this boot arrived exactly once (by device/boot/seq,
// and by timestamp across batches), and every acknowledged batch is there.
func checkExact(t *testing.T, sum Summary, batches map[string]*wire.Batch) {
	t.Helper()
	var seqs []uint64
	var readings int64
	var stamps []int64
	for _, b := range batches {
		if b.DeviceID != sum.Device || hexBoot(b.BootID) != sum.Boot {
			continue
		}
		seqs = append(seqs, b.Seq)
		readings += int64(len(b.Readings))
		for _, r := range b.Readings {
			stamps = append(stamps, r.TimeUS)
		}
	}
	slices.Sort(seqs)
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("received seqs %v: a gap before %d", seqs, s)
		}
	}
	if want := [][2]uint64{{1, uint64(len(seqs))}}; len(seqs) == 0 || !slices.Equal(sum.Acked, want) {
		t.Fatalf("summary acked %v, broker has seqs 1..%d", sum.Acked, len(seqs))
	}
	if sum.BatchesAcked != int64(len(seqs)) {
		t.Fatalf("summary batches_acked %d, broker has %d", sum.BatchesAcked, len(seqs))
	}
	if readings != sum.ReadingsSampled || readings != sum.ReadingsAcked || sum.DroppedReadings != 0 {
		t.Fatalf("broker has %d readings; summary sampled %d, acked %d, dropped %d",
			readings, sum.ReadingsSampled, sum.ReadingsAcked, sum.DroppedReadings)
	}
	slices.Sort(stamps)
	for i := 1; i < len(stamps); i++ {
		if stamps[i] == stamps[i-1] {
			t.Fatalf("reading at %d µs arrived twice (in two different batches)", stamps[i])
		}
	}
}

// TestBrokerOutageLosesNothing samples at 400 Hz, stops the broker until
// several batches have piled up in the spool, restarts it on the same port,
// and checks that after the backlog drains every reading arrived exactly once.
func TestBrokerOutageLosesNothing(t *testing.T) {
	addr := freeAddr(t)
	metrics := freeAddr(t)
	dir := t.TempDir()
	summary := filepath.Join(dir, "summary.json")
	rec := newRecorder(wire.TopicPrefix + "telemetry/")
	stopBroker := startBroker(t, addr, nil, new(auth.AllowHook), rec)

	ra := startAgent(t, "--simulate", "--device-id", "pi-outage", "--broker", "tcp://"+addr,
		"--spool-dir", filepath.Join(dir, "spool"), "--metrics-addr", metrics, "--summary-file", summary,
		"--reconnect-max", "1s", "--batch-interval", "500ms", "--backlog-rate", "4")

	rec.waitFor(t, "3 live batches", func(m []message) bool { return len(m) >= 3 })
	stopBroker()
	waitHealth(t, ra, metrics, "the agent to notice the outage", func(h healthBody) bool { return !h.MQTTConnected })
	waitHealth(t, ra, metrics, "6 batches spooled during the outage", func(h healthBody) bool { return h.SpoolBatches >= 6 })

	startBroker(t, addr, nil, new(auth.AllowHook), rec)
	waitHealth(t, ra, metrics, "reconnection and an empty spool", func(h healthBody) bool {
		return h.MQTTConnected && h.SpoolBatches == 0
	})
	m := scrape(t, metrics)
	for name, check := range map[string]func(float64) bool{
		"pilake_agent_readings_total":        func(v float64) bool { return v > 0 },
		"pilake_agent_mqtt_reconnects_total": func(v float64) bool { return v >= 1 },
		"pilake_agent_mqtt_connected":        func(v float64) bool { return v == 1 },
		"pilake_agent_sensor_healthy":        func(v float64) bool { return v == 1 },
		"pilake_agent_spool_batches":         func(v float64) bool { return v == 0 },
		"pilake_agent_lateness_seconds":      func(v float64) bool { return v > 0 }, // histogram count
	} {
		if v, ok := m[name]; !ok || !check(v) {
			t.Errorf("metric %s = %v (present %v)", name, v, ok)
		}
	}
	if code := ra.stop(t); code != 0 {
		t.Fatalf("agent exited with %d", code)
	}
	sum := readSummary(t, summary)
	batches := decodeAll(t, rec.messages())
	checkExact(t, sum, batches)
	t.Logf("%d readings in %d batches, %d messages received (%d redeliveries); lateness p50 %.0f µs p99 %.0f µs",
		sum.ReadingsSampled, sum.BatchesAcked, len(rec.messages()), len(rec.messages())-len(batches), sum.LatenessP50US, sum.LatenessP99US)
}
