package landing_test

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/internal/clock"
)

// TestMismatchReasonNamesBothDevices: issue 16 item 11. The reason is built
// before the batch goes back to the pool, so it names the claimed device
// even while other goroutines reuse pooled batches (run with -race).
func TestMismatchReasonNamesBothDevices(t *testing.T) {
	lk, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ld, err := landing.New(landing.Options{Lake: lk, Logger: quiet, QuarantineLimit: landing.QuarantineLimit{PerSecond: -1}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				data := encode(t, wire.Binary, batch("pi-1", uint64(g*100+i+1), 5))
				if _, err := ld.Land(t.Context(), landing.Message{Data: data, Source: "mqtt", Device: "pi-1"}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	before := quarantined(t, lk)
	bin := encode(t, wire.Binary, batch("pi-claimed", 1, 5))
	if out, err := ld.Land(t.Context(), landing.Message{Data: bin, Source: "mqtt", Device: "pi-9"}); err != nil || out != landing.OutcomeQuarantined {
		t.Fatalf("Land: %v %v", out, err)
	}
	wg.Wait()
	rec := newestRecord(t, lk, before, quarantined(t, lk))
	if !strings.Contains(rec.Reason, `"pi-claimed"`) || !strings.Contains(rec.Reason, `"pi-9"`) {
		t.Errorf("reason %q does not name both devices", rec.Reason)
	}
}

// TestLandTopic: issue 16 item 3. Only pilake/v1/telemetry/{device} exactly
// lands, and only as that device (and the authenticated one).
func TestLandTopic(t *testing.T) {
	lk, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ld, err := landing.New(landing.Options{Lake: lk, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	data := encode(t, wire.Binary, batch("pi-1", 1, 5))
	for _, tc := range []struct{ auth, topic, kind string }{
		{"", "pilake/v1/telemetry/x/y", landing.KindBadTopic},
		{"", "pilake/v1/telemetry/", landing.KindBadTopic},
		{"", "pilake/v1/telemetry/pi-1/extra", landing.KindBadTopic},
		{"", "pilake/v1/status/pi-1", landing.KindBadTopic},
		{"", "pilake/v1/telemetry/pi-2", landing.KindDeviceMismatch},
		{"pi-2", "pilake/v1/telemetry/pi-1", landing.KindDeviceMismatch},
		{"pi-2", "pilake/v1/telemetry/pi-2", landing.KindDeviceMismatch},
	} {
		q := ld.Stats().Quarantined(tc.kind)
		if err := ld.LandTopic(t.Context(), tc.auth, tc.topic, data); err != nil {
			t.Fatal(err)
		}
		if ld.Stats().Quarantined(tc.kind) != q+1 {
			t.Errorf("%q by %q: not quarantined as %s", tc.topic, tc.auth, tc.kind)
		}
	}
	if n := ld.Stats().Batches.Load(); n != 0 {
		t.Fatalf("%d batches landed", n)
	}
	if err := ld.LandTopic(t.Context(), "pi-1", "pilake/v1/telemetry/pi-1", data); err != nil || ld.Stats().Batches.Load() != 1 {
		t.Fatalf("the real batch: err %v, landed %d", err, ld.Stats().Batches.Load())
	}
}

// TestQuarantineLimitFlood: garbage beyond the per-source quarantine limit
// is acknowledged and dropped (counted), the lake grows by at most the
// burst, and another source's input is still quarantined and real batches
// still land.
func TestQuarantineLimitFlood(t *testing.T) {
	lk, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC))
	ld, err := landing.New(landing.Options{Lake: lk, Logger: quiet, Clock: clk,
		QuarantineLimit: landing.QuarantineLimit{PerSecond: 1, Burst: 10, BytesPerSecond: 1 << 20, BurstBytes: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	garbage := []byte(strings.Repeat("\x01garbage", 1000))
	for i := range 500 {
		garbage[1] = byte(i)
		if out, err := ld.Land(t.Context(), landing.Message{Data: garbage, Source: "mqtt", Peer: "attacker"}); err != nil || out != landing.OutcomeQuarantined {
			t.Fatalf("flood %d: %v %v", i, out, err)
		}
	}
	if got := len(quarantined(t, lk)); got != 2*10 {
		t.Errorf("quarantine holds %d objects after the flood, want %d (the burst)", got, 2*10)
	}
	if d := ld.Stats().QuarantineDropped.Load(); d != 490 {
		t.Errorf("dropped %d, want 490", d)
	}
	if out, _ := ld.Land(t.Context(), landing.Message{Data: garbage[:10], Source: "mqtt", Peer: "pi-2"}); out != landing.OutcomeQuarantined || len(quarantined(t, lk)) != 22 {
		t.Error("another source's bad input was not quarantined")
	}
	if err := ld.LandTopic(t.Context(), "pi-1", "pilake/v1/telemetry/pi-1", encode(t, wire.Binary, batch("pi-1", 1, 5))); err != nil || ld.Stats().Batches.Load() != 1 {
		t.Errorf("a real batch did not land during the flood: %v", err)
	}
	clk.Advance(2 * time.Second) // two more inputs' worth
	ld.Land(t.Context(), landing.Message{Data: garbage[:20], Source: "mqtt", Peer: "attacker"})
	if len(quarantined(t, lk)) != 24 {
		t.Error("the limit did not refill")
	}
}

// TestQuarantineRecordTopicCleaned: a 60 kB topic with control and
// bidirectional characters is truncated and escaped in the record.
func TestQuarantineRecordTopicCleaned(t *testing.T) {
	lk, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ld, err := landing.New(landing.Options{Lake: lk, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	topic := "pilake/v1/telemetry/\u202e\n" + strings.Repeat("x", 60000)
	before := quarantined(t, lk)
	if err := ld.LandTopic(t.Context(), "", topic, []byte("junk")); err != nil {
		t.Fatal(err)
	}
	rec := newestRecord(t, lk, before, quarantined(t, lk))
	if len(rec.Topic) > 300 || strings.ContainsAny(rec.Topic, "\u202e\n") || !strings.Contains(rec.Topic, `\u202e\x0a`) {
		t.Errorf("record topic (%d bytes) %q", len(rec.Topic), rec.Topic[:min(len(rec.Topic), 80)])
	}
}

// TestNewDeviceFlood: issue 16 item 7. Invented device ids beyond the
// burst are refused (not acknowledged: ErrNewDeviceRate) and counted;
// known devices keep landing; the rate refills.
func TestNewDeviceFlood(t *testing.T) {
	lk, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC))
	ld, err := landing.New(landing.Options{Lake: lk, Logger: quiet, Clock: clk,
		NewDeviceLimit: landing.NewDeviceLimit{PerSecond: 10, Burst: 100}})
	if err != nil {
		t.Fatal(err)
	}
	ld.KnowDevices([]string{"pi-known"})
	refused := 0
	for i := range 1000 {
		dev := "flood-" + strconv.Itoa(i)
		err := ld.LandTopic(t.Context(), "", wire.TelemetryTopic(dev), encode(t, wire.Binary, batch(dev, 1, 2)))
		switch {
		case errors.Is(err, landing.ErrNewDeviceRate):
			refused++
		case err != nil:
			t.Fatal(err)
		}
	}
	if refused != 900 || ld.Stats().NewDeviceRefused.Load() != 900 || ld.Stats().Batches.Load() != 100 {
		t.Errorf("refused %d (counted %d), landed %d; want 900, 900, 100", refused, ld.Stats().NewDeviceRefused.Load(), ld.Stats().Batches.Load())
	}
	for seq := range 3 {
		if err := ld.LandTopic(t.Context(), "", wire.TelemetryTopic("pi-known"), encode(t, wire.Binary, batch("pi-known", uint64(seq+1), 2))); err != nil {
			t.Fatalf("a known device during the flood: %v", err)
		}
	}
	clk.Advance(time.Second)
	if err := ld.LandTopic(t.Context(), "", wire.TelemetryTopic("flood-999"), encode(t, wire.Binary, batch("flood-999", 1, 2))); err != nil {
		t.Errorf("after the refill: %v", err)
	}
}

// A message received long ago (an IoT Hub routing record carries its
// enqueue time) neither drains the new-device bucket nor is refused for it.
func TestNewDeviceOldReceiveTime(t *testing.T) {
	lk, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC))
	ld, err := landing.New(landing.Options{Lake: lk, Logger: quiet, Clock: clk,
		NewDeviceLimit: landing.NewDeviceLimit{PerSecond: 10, Burst: 5}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		dev := "old-" + strconv.Itoa(i)
		_, err := ld.Land(t.Context(), landing.Message{Data: encode(t, wire.Binary, batch(dev, 1, 2)),
			ReceivedAt: clk.Now().Add(-5 * 24 * time.Hour), Source: "iothub"})
		if err != nil {
			t.Fatalf("device %d of the burst, received 5 days ago: %v", i, err)
		}
	}
	clk.Advance(time.Second) // refills 10 tokens (capped at the burst of 5)
	if _, err := ld.Land(t.Context(), landing.Message{Data: encode(t, wire.Binary, batch("late-new", 1, 2)),
		ReceivedAt: clk.Now().Add(-5 * 24 * time.Hour), Source: "iothub"}); err != nil {
		t.Fatalf("a new device after the refill: %v", err)
	}
}
