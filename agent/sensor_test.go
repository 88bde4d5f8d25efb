package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/pilake/pilake/agent/spool"
	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/hw"
)

// spoolBacklog leaves one batch of an earlier run (boot 0xb0) in the spool
// at dir, as an agent that could not deliver it would, and returns it.
func spoolBacklog(t *testing.T, dir, device string) *wire.Batch {
	t.Helper()
	b := &wire.Batch{DeviceID: device, BootID: 0xb0, Seq: 1, IntervalUS: 2500}
	start := time.Now().Add(-time.Hour).UnixMicro()
	for i := range 40 {
		b.Readings = append(b.Readings, wire.Reading{
			TimeUS: start + int64(i)*2500, Temp: 2150 + int32(i%3), Press: 101325 * 256, Hum: 45 * 1024, Fresh: i%3 == 0,
		})
	}
	data, err := wire.NewEncoder(wire.Binary).Append(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Append(b.BootID, b.Seq, len(b.Readings), data); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	return b
}

func hasKey(key string) func([]message) bool {
	return func(msgs []message) bool {
		return slices.ContainsFunc(msgs, func(m message) bool {
			var b wire.Batch
			return wire.Decode(m.Payload, &b) == nil && b.Key() == key
		})
	}
}

// TestSensorAbsentAtStart starts the agent with a sensor that does not
// answer (the fake bus NACKs every transaction, through hw.NewSensor and
// periph's driver as on a Pi): the agent keeps running, delivers the spool's
// backlog, reports the sensor absent on /healthz with the reason, retries
// with backoff, and starts sampling when the sensor answers. Every reading
// of the run then arrives exactly once.
func TestSensorAbsentAtStart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		failN int  // transactions the fake NACKs from the start
		stall bool // the bus hangs from the start (a slave holding SDA low)
		plug  bool // the test "plugs the sensor in" (cancels the failures, releases the bus)
		why   []string
		fails int64
	}{
		// One transaction per attempt (the chip id read): 3 failed attempts.
		{name: "NACKs its first 3 transactions", failN: 3, fails: 3},
		{name: "unplugged until plugged in", failN: 1 << 30, plug: true, why: []string{"NACK", "chip id"}, fails: -1},
		{name: "bus hung until released", stall: true, plug: true, why: []string{"attempt 1 running", "hung bus"}, fails: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const device = "pi-absent"
			addr, metrics := freeAddr(t), freeAddr(t)
			dir := t.TempDir()
			spoolDir, summary := filepath.Join(dir, "spool"), filepath.Join(dir, "summary.json")
			backlog := spoolBacklog(t, spoolDir, device)
			rec := newRecorder(wire.TopicPrefix + "telemetry/")
			startBroker(t, addr, nil, new(auth.AllowHook), rec)

			fake := hw.NewFake(hw.FakeConfig{Seed: hw.SeedFor(device)})
			fake.FailNext(tc.failN, nil)
			if tc.stall {
				fake.Stall()
			}
			ra := startAgentWith(t, options{fake: fake, openBackoff: 20 * time.Millisecond},
				"--simulate", "--device-id", device, "--broker", "tcp://"+addr, "--spool-dir", spoolDir,
				"--metrics-addr", metrics, "--summary-file", summary, "--batch-interval", "200ms")

			if tc.plug {
				rec.waitFor(t, "the backlog while the sensor is absent", hasKey(backlog.Key()))
				waitHealth(t, ra, metrics, "/healthz to say the sensor is absent and why", func(h healthBody) bool {
					if h.Status != "unhealthy" || h.Sensor.OK || h.Sensor.State != "absent" {
						return false
					}
					for _, w := range tc.why {
						if !strings.Contains(h.Why, w) {
							return false
						}
					}
					return true
				})
				m := scrape(t, metrics)
				if m["pilake_agent_sensor_healthy"] != 0 || m["pilake_agent_readings_total"] != 0 || (!tc.stall && m["pilake_agent_sensor_open_failures_total"] < 1) {
					t.Errorf("metrics while absent: healthy %v, readings %v, open failures %v", m["pilake_agent_sensor_healthy"],
						m["pilake_agent_readings_total"], m["pilake_agent_sensor_open_failures_total"])
				}
				fake.FailNext(0, nil) // plugged in
				fake.Release()
			}
			waitHealth(t, ra, metrics, "sampling to start", func(h healthBody) bool { return h.Status == "ok" && h.Sensor.State == "ok" })
			rec.waitFor(t, "2 batches of this run", func(msgs []message) bool { return len(msgs) >= 3 })
			m := scrape(t, metrics)
			if got := m["pilake_agent_sensor_open_failures_total"]; tc.fails >= 0 && got != float64(tc.fails) {
				t.Errorf("open failures = %v, want %d", got, tc.fails)
			}
			if code := ra.stop(t); code != 0 {
				t.Fatalf("agent exited with %d", code)
			}
			batches := decodeAll(t, rec.messages())
			if _, ok := batches[backlog.Key()]; !ok {
				t.Errorf("the backlog batch %s was not delivered", backlog.Key())
			}
			checkExact(t, readSummary(t, summary), batches)
		})
	}
}

// TestWrongSensorIsFatal: a device that is not the configured sensor is a
// configuration error no retry fixes. The agent exits with status 2 and says
// what it found, whether the device answers at start or only after a while.
func TestWrongSensorIsFatal(t *testing.T) {
	for _, tc := range []struct {
		name  string
		chip  byte
		failN int
		want  string
	}{
		{name: "BMP280 without --allow-bmp280", chip: hw.ChipIDBMP280, want: "--allow-bmp280"},
		{name: "BMP180 at the address", chip: 0x55, want: "BMP180"},
		{name: "BMP280 answering after NACKs", chip: hw.ChipIDBMP280, failN: 2, want: "--allow-bmp280"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := hw.NewFake(hw.FakeConfig{Seed: 1})
			fake.SetChipID(tc.chip)
			fake.FailNext(tc.failN, nil)
			ra := startAgentWith(t, options{fake: fake, openBackoff: 10 * time.Millisecond},
				"--simulate", "--device-id", "pi-wrong", "--broker", "tcp://"+freeAddr(t),
				"--spool-dir", filepath.Join(t.TempDir(), "spool"), "--metrics-addr", "", "--shutdown-timeout", "1s")
			select {
			case code := <-ra.done:
				ra.done <- code
				if code != 2 {
					t.Errorf("exit status %d, want 2", code)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the agent kept running with the wrong device")
			}
			if log := ra.log.String(); !strings.Contains(log, tc.want) {
				t.Errorf("the log does not say %q:\n%s", tc.want, log)
			}
		})
	}
}
