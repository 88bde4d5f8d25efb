package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"periph.io/x/devices/v3/bmxx80"

	"github.com/pilake/pilake/agent/iothub"
	"github.com/pilake/pilake/agent/spool"
	"github.com/pilake/pilake/agent/uplink"
	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/internal/conf"
)

// Config is everything the agent can be told, by flag, PILAKE_* variable or
// config file (see agent.conf.example).
type Config struct {
	ConfigFile string

	DeviceID      string
	Simulate      bool
	SimClockSteps string
	I2CBus        string
	I2CAddr       uint
	AllowBMP280   bool
	OsrsT         uint
	OsrsP         uint
	OsrsH         uint
	Filter        uint
	Standby       time.Duration
	Rate          float64
	BatchEvery    time.Duration
	AlignBatches  bool
	ReadTimeout   time.Duration
	FrozenAfter   time.Duration
	Encoding      string
	DriverSense   bool

	Broker        string
	Username      string
	Password      string
	TLSCA         string
	TLSCert       string
	TLSKey        string
	TLSServerName string
	IoTHub        string
	IoTHubTTL     time.Duration

	SpoolDir       string
	SpoolMax       byteSize
	SpoolFsync     string
	SpoolFsyncInt  time.Duration
	BacklogRate    float64
	MaxInflight    int
	ReconnectMax   time.Duration
	AckMode        string
	LandingTimeout time.Duration
	MaxUnlanded    int

	MetricsAddr     string
	ShutdownTimeout time.Duration
	SummaryFile     string
	LogFormat       string
	LogLevel        string
}

// byteSize is a flag value in bytes that accepts KiB, MiB and GiB suffixes.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("want a byte count like 268435456 or 256MiB")
	}
	*b = byteSize(n * mult)
	return nil
}

func defaultDeviceID() string {
	h, err := os.Hostname()
	if err != nil {
		return "pi"
	}
	h, _, _ = strings.Cut(h, ".")
	if !wire.ValidDeviceID(h) {
		return "pi"
	}
	return h
}

func defaultStateDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" { // systemd StateDirectory=
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "pilake")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "pilake")
	}
	return filepath.Join(os.TempDir(), "pilake")
}

func newFlagSet(c *Config) *flag.FlagSet {
	fs := flag.NewFlagSet("pilake-agent", flag.ContinueOnError)
	fs.StringVar(&c.ConfigFile, conf.ConfigFlag, "", "configuration file (name = value lines; see agent.conf.example)")

	fs.StringVar(&c.DeviceID, "device-id", defaultDeviceID(), "device id: 1-64 of [A-Za-z0-9._-] (default: the host name)")
	fs.BoolVar(&c.Simulate, "simulate", false, "read a simulated BME280 (hw's fake I2C bus, seeded from the device id) instead of real hardware")
	fs.StringVar(&c.SimClockSteps, "simulate-clock-steps", "", "with --simulate, step the agent's view of the wall clock (tests of clock steps): comma-separated AFTER:STEP, e.g. 3s:+24h,6s:-24h; while stepped the clock reads as not synchronised")
	fs.StringVar(&c.I2CBus, "i2c-bus", "", `I2C bus name for periph ("1", "/dev/i2c-1"; "" = first bus)`)
	fs.UintVar(&c.I2CAddr, "i2c-addr", 0x76, "BME280 I2C address: 0x76 (SDO low) or 0x77")
	fs.BoolVar(&c.AllowBMP280, "allow-bmp280", false, "accept a BMP280 (no humidity) instead of failing")
	fs.UintVar(&c.OsrsT, "oversampling-temp", 1, "temperature oversampling: 1, 2, 4, 8 or 16")
	fs.UintVar(&c.OsrsP, "oversampling-press", 1, "pressure oversampling: 0 (off), 1, 2, 4, 8 or 16")
	fs.UintVar(&c.OsrsH, "oversampling-hum", 1, "humidity oversampling: 0 (off), 1, 2, 4, 8 or 16")
	fs.UintVar(&c.Filter, "filter", 2, "IIR filter coefficient: 2, 4, 8 or 16 (normal mode needs a filter)")
	fs.DurationVar(&c.Standby, "standby", 500*time.Microsecond, "standby between conversions in normal mode (0.5ms, 10ms, 20ms, 62.5ms, 125ms, 250ms, 500ms, 1s)")
	fs.Float64Var(&c.Rate, "rate", 400, "polling rate in Hz")
	fs.DurationVar(&c.BatchEvery, "batch-interval", time.Second, "time covered by one batch")
	fs.BoolVar(&c.AlignBatches, "batch-align", true, "cut batches on whole multiples of batch-interval of the wall clock (a fleet with synchronised clocks then sends each interval's batches together: a fleet chart shows them ~20-30 ms after the batch ends instead of up to 100 ms); false: from the moment the agent starts, which spreads a very large fleet's batches over the interval")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", 100*time.Millisecond, "longest a sensor read may take before the bus counts as stuck")
	fs.DurationVar(&c.FrozenAfter, "frozen-after", 2*time.Second, "unchanged values for this long mean a frozen sensor")
	fs.BoolVar(&c.DriverSense, "driver-sense", false, "read through periph bmxx80's Sense (two allocations per read) instead of hw's allocation-free burst read with the same integer compensation")
	fs.StringVar(&c.Encoding, "encoding", "pilake-v1", "batch encoding: pilake-v1, pilake-v1+zstd or json (Azure simulator compatible)")

	fs.StringVar(&c.Broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL: tcp://host:port, or ssl://host:port for TLS")
	fs.StringVar(&c.Username, "username", "", "MQTT username")
	fs.StringVar(&c.Password, "password", "", "MQTT password (prefer PILAKE_PASSWORD or the config file)")
	fs.StringVar(&c.TLSCA, "tls-ca", "", "PEM file of CA certificates to trust (default: the system's)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM client certificate (with --tls-key)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM client key")
	fs.StringVar(&c.TLSServerName, "tls-server-name", "", "server name expected in the broker's certificate (default: the broker's host)")
	fs.StringVar(&c.IoTHub, "iothub-connection-string", "", "Azure IoT Hub device connection string (HostName=…;DeviceId=…;SharedAccessKey=…): send to IoT Hub instead of --broker (which, if set to ssl://host:port, overrides the hub's address); it holds the device key, so prefer PILAKE_IOTHUB_CONNECTION_STRING or the config file to the command line")
	fs.DurationVar(&c.IoTHubTTL, "iothub-token-ttl", time.Hour, "lifetime of IoT Hub SAS tokens; the connection is renewed at 80% of it")

	fs.StringVar(&c.SpoolDir, "spool-dir", "", "spool directory (default: $STATE_DIRECTORY, or ~/.local/state/pilake, + /spool-<device>)")
	c.SpoolMax = spool.DefaultMaxBytes
	fs.Var(&c.SpoolMax, "spool-max-bytes", "spool byte cap; the oldest batches are dropped beyond it (e.g. 256MiB)")
	fs.StringVar(&c.SpoolFsync, "spool-fsync", "interval", "spool fsync policy: always, interval or never")
	fs.DurationVar(&c.SpoolFsyncInt, "spool-fsync-interval", spool.DefaultFsyncInterval, "fsync interval of the interval policy")
	fs.Float64Var(&c.BacklogRate, "backlog-rate", 20, "batches sent per second at most while a backlog drains (oldest first)")
	fs.IntVar(&c.MaxInflight, "max-inflight", 16, "batches published and not yet acknowledged at most")
	fs.StringVar(&c.AckMode, "ack-mode", "auto", "what deletes a batch from the spool: landed (the collector's landing ack, for external brokers), puback, or auto (landed unless the broker says its PUBACK means landed, as the collector's embedded broker does; puback for IoT Hub)")
	fs.DurationVar(&c.LandingTimeout, "landing-timeout", 10*time.Second, "a PUBACKed batch with no landing ack after this is sent again (doubling per resend)")
	fs.IntVar(&c.MaxUnlanded, "max-unlanded", 8, "batches sent and not yet acknowledged as landed at most; keep it times batch-interval under the collector's allowed-lateness (10s), so a batch a broker lost, sent again, is not late")
	fs.DurationVar(&c.ReconnectMax, "reconnect-max", 30*time.Second, "longest wait between reconnection attempts (the backoff doubles from 1s up to this)")

	fs.StringVar(&c.MetricsAddr, "metrics-addr", "127.0.0.1:9101", `address of /metrics and /healthz ("" disables)`)
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 5*time.Second, "on SIGINT/SIGTERM, how long to wait for outstanding acknowledgements")
	fs.StringVar(&c.SummaryFile, "summary-file", "", "write a JSON run summary here on exit")
	fs.StringVar(&c.LogFormat, "log-format", "auto", "log format: auto (JSON unless stderr is a terminal), json or text")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	return fs
}

func oversampling(n uint, allowOff bool) (bmxx80.Oversampling, error) {
	switch n {
	case 0:
		if allowOff {
			return bmxx80.Off, nil
		}
	case 1:
		return bmxx80.O1x, nil
	case 2:
		return bmxx80.O2x, nil
	case 4:
		return bmxx80.O4x, nil
	case 8:
		return bmxx80.O8x, nil
	case 16:
		return bmxx80.O16x, nil
	}
	return 0, fmt.Errorf("oversampling %d: want 1, 2, 4, 8 or 16", n)
}

// SensorOpts returns the driver options: always normal mode (a filter and a
// standby), because forced mode sleeps a whole conversion per read.
func (c *Config) SensorOpts() (bmxx80.Opts, error) {
	var o bmxx80.Opts
	var err error
	if o.Temperature, err = oversampling(c.OsrsT, false); err != nil {
		return o, fmt.Errorf("oversampling-temp: %w", err)
	}
	if o.Pressure, err = oversampling(c.OsrsP, true); err != nil {
		return o, fmt.Errorf("oversampling-press: %w", err)
	}
	if o.Humidity, err = oversampling(c.OsrsH, true); err != nil {
		return o, fmt.Errorf("oversampling-hum: %w", err)
	}
	switch c.Filter {
	case 2:
		o.Filter = bmxx80.F2
	case 4:
		o.Filter = bmxx80.F4
	case 8:
		o.Filter = bmxx80.F8
	case 16:
		o.Filter = bmxx80.F16
	default:
		return o, fmt.Errorf("filter %d: want 2, 4, 8 or 16 (normal mode, which 400 Hz polling needs, requires a filter)", c.Filter)
	}
	if c.Standby <= 0 {
		return o, errors.New("standby must be positive (normal mode)")
	}
	o.Standby = c.Standby
	return o, nil
}

// WireEncoding parses --encoding.
func (c *Config) WireEncoding() (wire.Encoding, error) {
	for _, e := range []wire.Encoding{wire.Binary, wire.BinaryZstd, wire.JSON} {
		if c.Encoding == e.String() {
			return e, nil
		}
	}
	switch c.Encoding {
	case "binary", "v1":
		return wire.Binary, nil
	case "zstd":
		return wire.BinaryZstd, nil
	}
	return 0, fmt.Errorf("encoding %q: want pilake-v1, pilake-v1+zstd or json", c.Encoding)
}

// Validate checks the settings and fills derived defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.IoTHub != "" {
		cs, err := iothub.ParseConnectionString(c.IoTHub)
		if err != nil {
			errs = append(errs, err)
		} else if c.DeviceID != cs.DeviceID {
			c.DeviceID = cs.DeviceID // the hub decides who we are
		}
	}
	if !wire.ValidDeviceID(c.DeviceID) {
		errs = append(errs, fmt.Errorf("device-id %q: want 1-%d of [A-Za-z0-9._-], not starting with '.' or '-'", c.DeviceID, wire.MaxDeviceIDLen))
	}
	if c.I2CAddr != 0x76 && c.I2CAddr != 0x77 {
		errs = append(errs, fmt.Errorf("i2c-addr 0x%x: a BME280 is at 0x76 or 0x77", c.I2CAddr))
	}
	if _, err := c.SensorOpts(); err != nil {
		errs = append(errs, err)
	}
	if c.Rate <= 0 || c.Rate > 2000 {
		errs = append(errs, fmt.Errorf("rate %g Hz: want 0 < rate <= 2000", c.Rate))
	}
	if c.BatchEvery < 10*time.Millisecond || c.BatchEvery > time.Minute {
		errs = append(errs, fmt.Errorf("batch-interval %v: want 10ms..1m", c.BatchEvery))
	}
	enc, err := c.WireEncoding()
	if err != nil {
		errs = append(errs, err)
	}
	if c.Rate > 0 && (c.IoTHub != "" || enc == wire.JSON) {
		// A batch is at most wire.MaxEncodedSize (IoT Hub's 256 KB message limit,
		// which the collector enforces for every uplink), or it cannot be sent.
		// JSON is ~220 bytes a reading whatever the signal, so a long batch
		// interval is refused on any uplink; binary (~2.5 bytes a reading,
		// ~41 at worst) is held to its worst case on IoT Hub only.
		per := 41.0
		if enc == wire.JSON {
			per = 220
		}
		if est := c.Rate * c.BatchEvery.Seconds() * per; est > 0.9*iothub.MaxMessageBytes {
			errs = append(errs, fmt.Errorf("batch-interval %v at %g Hz can exceed the 256 KB batch limit (IoT Hub's message limit) with %s (worst case ~%.0f KB): shorten it",
				c.BatchEvery, c.Rate, enc, est/1024))
		}
	}
	if c.IoTHub == "" && c.Broker == "" {
		errs = append(errs, errors.New("broker: no MQTT broker given"))
	}
	if _, err := spool.ParseFsyncPolicy(c.SpoolFsync); err != nil {
		errs = append(errs, fmt.Errorf("spool-fsync: %w", err))
	}
	if c.SpoolMax < 1<<20 {
		errs = append(errs, fmt.Errorf("spool-max-bytes %d: want at least 1MiB", c.SpoolMax))
	}
	if c.MaxInflight < 1 || c.MaxInflight > 1000 {
		errs = append(errs, fmt.Errorf("max-inflight %d: want 1..1000", c.MaxInflight))
	}
	if c.SimClockSteps != "" {
		if !c.Simulate {
			errs = append(errs, errors.New("simulate-clock-steps needs --simulate"))
		} else if _, err := parseClockSteps(c.SimClockSteps); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := uplink.ParseAckMode(c.AckMode); err != nil {
		errs = append(errs, err)
	}
	if c.LandingTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("landing-timeout %v: want at least 100ms", c.LandingTimeout))
	}
	if c.MaxUnlanded < 1 || c.MaxUnlanded > 100000 {
		errs = append(errs, fmt.Errorf("max-unlanded %d: want 1..100000", c.MaxUnlanded))
	}
	if c.BacklogRate <= 0 {
		errs = append(errs, fmt.Errorf("backlog-rate %g: want > 0", c.BacklogRate))
	}
	if c.IoTHubTTL < time.Minute {
		errs = append(errs, fmt.Errorf("iothub-token-ttl %v: want at least 1m", c.IoTHubTTL))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, errors.New("shutdown-timeout must not be negative"))
	}
	switch c.LogFormat {
	case "auto", "json", "text":
	default:
		errs = append(errs, fmt.Errorf("log-format %q: want auto, json or text", c.LogFormat))
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	if c.SpoolDir == "" && len(errs) == 0 {
		c.SpoolDir = filepath.Join(defaultStateDir(), "spool-"+c.DeviceID)
	}
	return errors.Join(errs...)
}

// LoadConfig parses args and the environment into a validated Config.
func LoadConfig(args []string, lookupEnv func(string) (string, bool)) (*Config, *flag.FlagSet, error) {
	c := &Config{}
	fs := newFlagSet(c)
	fs.SetOutput(new(strings.Builder))
	if err := conf.Load(fs, args, "PILAKE_", lookupEnv); err != nil {
		return nil, fs, err
	}
	if err := c.Validate(); err != nil {
		return nil, fs, err
	}
	return c, fs, nil
}

// clockStep is one step of --simulate-clock-steps: after After from the
// start, the wall clock reads Total (the sum of the steps so far) off.
type clockStep struct{ after, total time.Duration }

func parseClockSteps(s string) ([]clockStep, error) {
	var out []clockStep
	var total time.Duration
	for _, part := range strings.Split(s, ",") {
		a, st, ok := strings.Cut(strings.TrimSpace(part), ":")
		after, err1 := time.ParseDuration(a)
		step, err2 := time.ParseDuration(st)
		if !ok || err1 != nil || err2 != nil || after < 0 || len(out) > 0 && after <= out[len(out)-1].after {
			return nil, fmt.Errorf("simulate-clock-steps %q: want increasing AFTER:STEP durations, e.g. 3s:+24h,6s:-24h", s)
		}
		total += step
		out = append(out, clockStep{after, total})
	}
	return out, nil
}
