package main

import (
	"bytes"
	_ "embed"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"periph.io/x/devices/v3/bmxx80"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/internal/conf"
)

//go:embed agent.conf.example
var exampleConf []byte

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// TestExampleConfig parses the shipped example file: every setting must be a
// known flag with a valid value.
func TestExampleConfig(t *testing.T) {
	kvs, err := conf.Parse(exampleConf)
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) < 20 {
		t.Fatalf("example config has only %d settings", len(kvs))
	}
	path := filepath.Join(t.TempDir(), "agent.conf")
	if err := os.WriteFile(path, exampleConf, 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, err := LoadConfig([]string{"--config", path}, env(nil))
	if err != nil {
		t.Fatalf("loading agent.conf.example: %v", err)
	}
	if c.DeviceID != "pi-livingroom" || c.I2CBus != "1" || c.I2CAddr != 0x76 || c.Rate != 400 ||
		c.BatchEvery != time.Second || c.SpoolMax != 256<<20 || c.SpoolDir != "/var/lib/pilake-agent/spool" ||
		c.Standby != 500*time.Microsecond || c.MetricsAddr != "127.0.0.1:9101" {
		t.Fatalf("example config loaded as %+v", c)
	}
	o, err := c.SensorOpts()
	if err != nil || o.Filter != bmxx80.F2 || o.Humidity != bmxx80.O1x {
		t.Fatalf("sensor options %+v, %v", o, err)
	}
	if e, _ := c.WireEncoding(); e != wire.Binary {
		t.Fatalf("encoding %v", e)
	}
}

func TestConfigPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.conf")
	if err := os.WriteFile(path, []byte("device-id = from-file\nrate = 100\nbroker = tcp://file:1883\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, err := LoadConfig([]string{"--config", path, "--broker", "tcp://flag:1883"},
		env(map[string]string{"PILAKE_RATE": "200", "PILAKE_BROKER": "tcp://env:1883"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.DeviceID != "from-file" || c.Rate != 200 || c.Broker != "tcp://flag:1883" {
		t.Fatalf("got device %q rate %g broker %q: want file < env < flag", c.DeviceID, c.Rate, c.Broker)
	}
	if !strings.HasSuffix(c.SpoolDir, "spool-from-file") {
		t.Fatalf("default spool dir %q not per device", c.SpoolDir)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--device-id", "a/b"}, "device-id"},
		{[]string{"--i2c-addr", "0x50"}, "i2c-addr"},
		{[]string{"--filter", "1"}, "filter"},
		{[]string{"--oversampling-temp", "3"}, "oversampling-temp"},
		{[]string{"--rate", "0"}, "rate"},
		{[]string{"--encoding", "xml"}, "encoding"},
		{[]string{"--spool-fsync", "sometimes"}, "spool-fsync"},
		{[]string{"--spool-max-bytes", "12parsecs"}, "spool-max-bytes"},
		{[]string{"--iothub-connection-string", "HostName=h"}, "IoT Hub"},
		{[]string{"--iothub-connection-string", "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=a2V5", "--encoding", "json", "--batch-interval", "10s"}, "256 KB"},
		{[]string{"--broker", "tcp://127.0.0.1:1883", "--encoding", "json", "--batch-interval", "5s"}, "256 KB"},
		{[]string{"--log-format", "xml"}, "log-format"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := LoadConfig(tc.args, env(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadConfig(%q) = %v, want an error mentioning %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestIoTHubConfigTakesDeviceFromConnectionString(t *testing.T) {
	c, _, err := LoadConfig([]string{"--iothub-connection-string", "HostName=h.azure-devices.net;DeviceId=pi-9;SharedAccessKey=a2V5"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.DeviceID != "pi-9" {
		t.Fatalf("device id %q, want the connection string's pi-9", c.DeviceID)
	}
}

func TestEncodingOf(t *testing.T) {
	for _, enc := range []wire.Encoding{wire.Binary, wire.BinaryZstd, wire.JSON} {
		b := &wire.Batch{DeviceID: "d", BootID: 1, Seq: 1, IntervalUS: 2500}
		for i := range 400 {
			b.Readings = append(b.Readings, wire.Reading{TimeUS: 1e15 + int64(i)*2500, Temp: 2000 + int32(i%7), Press: 101325 * 256, Hum: 40 * 1024, Fresh: i%3 == 0})
		}
		data, err := wire.NewEncoder(enc).Append(nil, b)
		if err != nil {
			t.Fatal(err)
		}
		got := encodingOf(data, wire.Binary)
		// zstd is used only when it pays; either binary flavour is then right.
		if enc == wire.BinaryZstd && got == wire.Binary {
			continue
		}
		if got != enc {
			t.Fatalf("encodingOf(%s batch) = %s", enc, got)
		}
	}
}

func TestLoggerHidesBrokerPassword(t *testing.T) {
	var buf bytes.Buffer
	cfg := &Config{LogLevel: "info", LogFormat: "json"}
	log := newLogger(cfg, &buf)
	log.With(slog.String("broker", "tcp://pi:BROKERSECRET@collector:1883")).Info("connecting", "err", errors.New(`dial "ssl://pi:BROKERSECRET@collector:8883": refused`))
	if strings.Contains(buf.String(), "BROKERSECRET") || !strings.Contains(buf.String(), "collector:1883") {
		t.Errorf("log line: %s", buf.String())
	}
}
