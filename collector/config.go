package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pilake/pilake/agent/redact"
	"github.com/pilake/pilake/collector/broker"
	"github.com/pilake/pilake/collector/bronzeapp"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/stages"
	"github.com/pilake/pilake/internal/conf"
)

// Config is the collector's configuration: flags, PILAKE_* environment
// variables and an optional file (see internal/conf and collector.conf.example).
type Config struct {
	ConfigFile string

	// Lake: a local directory, or Azure Blob / ADLS Gen2.
	Lake                  string
	AzureConnectionString string
	AzureAccount          string
	AzureKey              string
	AzureSAS              string
	AzureEndpoint         string
	AzureContainer        string
	AzurePrefix           string

	// MQTT: an embedded broker on Listen, or an external Broker.
	Listen       string
	Broker       string
	ClientID     string
	MQTTUsername string
	MQTTPassword string
	ShareGroup   string
	Workers      int

	// TLS files for an external broker (ssl://).
	BrokerTLSCA, BrokerTLSCert, BrokerTLSKey string

	// Embedded broker security (required beyond loopback) and limits.
	TLSCert, TLSKey, TLSClientCA string
	FleetKeyFile                 string
	DenyFile                     string
	MaxConnections               int
	MaxConnectionsPerSource      int
	ConnectTimeout               time.Duration
	SessionExpiry                time.Duration
	MaxInflight                  int
	QuarantineRate               float64
	QuarantineBytesRate          float64
	NewDeviceRate                float64
	MaxKeepalive                 int
	MaxRetained                  int
	IoTHubMaxFileBytes           int64
	IoTHubMaxBlockBytes          int
	IoTHubMaxMapEntries          int
	NewDeviceBurst               int

	// IoT Hub message routing files.
	IoTHubRoutingPrefix    string
	IoTHubRoutingContainer string
	IoTHubPollInterval     time.Duration

	// Stages.
	Window          time.Duration
	AllowedLateness time.Duration
	MovingAverages  string
	MaxSkew         time.Duration
	MaxAhead        time.Duration
	CommitInterval  time.Duration
	LandingLinger   time.Duration

	// Lifecycle.
	LandingRetention time.Duration
	VacuumRetention  time.Duration
	LogRetention     time.Duration
	ForgetAfter      time.Duration
	CheckpointPolicy string
	// FinaliseOnStop: a clean stop finalises every open window (see
	// stages.Options.KeepOpenOnStop, its opposite).
	FinaliseOnStop bool

	// Operations.
	MetricsAddr string
	// MetricsAllowedHosts: Host header names /metrics answers to besides
	// the loopback names and the metrics-addr host (DNS-rebinding defence).
	MetricsAllowedHosts string
	LogFormat           string
	LogLevel            string
	Live                bool
	CPUProfile          string
	Pprof               bool
	Stages              bool
	Rollups             bool
	BronzeAppend        string
}

func newFlagSet(c *Config) *flag.FlagSet {
	fs := flag.NewFlagSet("collector", flag.ContinueOnError)
	fs.StringVar(&c.ConfigFile, conf.ConfigFlag, "", "configuration file (name = value lines)")
	fs.StringVar(&c.Lake, "lake", "./lake", "local lake directory (ignored when an Azure container is given)")
	fs.StringVar(&c.AzureConnectionString, "azure-connection-string", "", "Azure Storage connection string")
	fs.StringVar(&c.AzureAccount, "azure-account", "", "Azure storage account name (with --azure-key or --azure-sas)")
	fs.StringVar(&c.AzureKey, "azure-key", "", "Azure storage account key")
	fs.StringVar(&c.AzureSAS, "azure-sas", "", "Azure shared access signature (query string)")
	fs.StringVar(&c.AzureEndpoint, "azure-endpoint", "", "Blob service URL (default https://ACCOUNT.blob.core.windows.net)")
	fs.StringVar(&c.AzureContainer, "azure-container", "", "Azure container (ADLS Gen2 filesystem) holding the lake; enables the Azure lake")
	fs.StringVar(&c.AzurePrefix, "azure-prefix", "", "object name prefix inside the container")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:1883", "embedded MQTT broker address (unused with --broker)")
	fs.StringVar(&c.Broker, "broker", "", "external MQTT broker URL, e.g. tcp://host:1883 (then no embedded broker)")
	fs.StringVar(&c.ClientID, "client-id", "", "MQTT client id for an external broker; stable across restarts (default pilake-collector-HOSTNAME)")
	fs.StringVar(&c.MQTTUsername, "mqtt-username", "", "MQTT username for an external broker")
	fs.StringVar(&c.MQTTPassword, "mqtt-password", "", "MQTT password for an external broker")
	fs.StringVar(&c.BrokerTLSCA, "broker-tls-ca", "", "external broker: PEM CA bundle to verify its certificate (default: the system's)")
	fs.StringVar(&c.BrokerTLSCert, "broker-tls-cert", "", "external broker: PEM client certificate (the collector's identity), with --broker-tls-key")
	fs.StringVar(&c.BrokerTLSKey, "broker-tls-key", "", "external broker: PEM client key")
	fs.StringVar(&c.ShareGroup, "share-group", "", "MQTT shared-subscription group ($share/GROUP/...) to split load over collectors")
	fs.IntVar(&c.Workers, "workers", 128, "messages landed concurrently from an external broker")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "embedded broker: PEM server certificate chain (TLS 1.2+; reloaded when the file changes)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "embedded broker: PEM server key")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", "", "embedded broker: PEM CA bundle whose client certificates authenticate devices (mutual TLS)")
	fs.StringVar(&c.FleetKeyFile, "fleet-key-file", "", "embedded broker: file holding the fleet key that signs device tokens (see 'collector device-token')")
	fs.StringVar(&c.DenyFile, "deny-file", "", "embedded broker: file of revoked identities, one per line (reloaded when it changes)")
	fs.IntVar(&c.MaxConnections, "max-connections", 10000, "embedded broker: most open connections")
	fs.IntVar(&c.MaxConnectionsPerSource, "max-connections-per-source", 1000, "embedded broker: most open connections from one IP address")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", 10*time.Second, "embedded broker: time a new connection has for its TLS handshake and CONNECT")
	fs.DurationVar(&c.SessionExpiry, "session-expiry", time.Hour, "embedded broker: how long a disconnected persistent session and its queued messages are kept")
	fs.IntVar(&c.MaxInflight, "max-inflight", 1024, "embedded broker: most QoS 1 messages queued for one client")
	fs.Float64Var(&c.QuarantineRate, "quarantine-rate", 20, "quarantined inputs a second per source (a burst of 10 s allowed); beyond it rejected input is dropped and counted (negative: no limit)")
	fs.Float64Var(&c.NewDeviceRate, "new-device-rate", 100, "device ids not seen before taken a second (beyond --new-device-burst); their batches wait (not acknowledged) beyond it (negative: no limit)")
	fs.IntVar(&c.MaxKeepalive, "max-keepalive", 120, "embedded broker: keep-alive (s) imposed on clients asking for none or a longer one; a connection silent for 1.5 times it is dropped")
	fs.IntVar(&c.MaxRetained, "max-retained", 20000, "embedded broker: most retained topics (device status only, 256 bytes each at most)")
	fs.Int64Var(&c.IoTHubMaxFileBytes, "iothub-max-file-bytes", 64<<20, "IoT Hub routing files larger than this are quarantined unread")
	fs.IntVar(&c.IoTHubMaxBlockBytes, "iothub-max-block-bytes", 16<<20, "most bytes one Avro block of a routing file may decompress to")
	fs.IntVar(&c.IoTHubMaxMapEntries, "iothub-max-map-entries", 256, "most entries in one Avro map (Properties, SystemProperties) of a routing record")
	fs.IntVar(&c.NewDeviceBurst, "new-device-burst", 10000, "new device ids taken at once")
	fs.Float64Var(&c.QuarantineBytesRate, "quarantine-bytes-rate", 1<<20, "quarantined bytes a second per source (a burst of 16 s allowed)")
	fs.StringVar(&c.IoTHubRoutingPrefix, "iothub-routing-prefix", "", "ingest Azure IoT Hub message-routing files under this prefix (e.g. myhub/)")
	fs.StringVar(&c.IoTHubRoutingContainer, "iothub-routing-container", "", "container of the routing files, if not the lake's (same credentials)")
	fs.DurationVar(&c.IoTHubPollInterval, "iothub-poll-interval", 10*time.Second, "how often to look for new routing files")
	fs.DurationVar(&c.Window, "window", time.Second, "silver tumbling window")
	fs.DurationVar(&c.AllowedLateness, "allowed-lateness", 10*time.Second, "per-device watermark lag behind its newest reading")
	fs.StringVar(&c.MovingAverages, "moving-averages", "8,15,60", "gold moving-average lengths, in windows")
	fs.DurationVar(&c.MaxSkew, "max-skew", 24*time.Hour, "quarantine readings whose time is further than this from the receive time, after clock correction (negative: off)")
	fs.DurationVar(&c.MaxAhead, "max-ahead", 2*time.Minute, "a synchronised clock's batch with a reading further than this after its receive time is quarantined, an unsynchronised one re-based from its monotonic offset (negative: no clock policy)")
	fs.DurationVar(&c.CommitInterval, "commit-interval", 2*time.Second, "longest time between Delta commits")
	fs.DurationVar(&c.LandingRetention, "landing-retention", stages.DefaultLandingRetention, "delete landing/ segments of hours older than this once bronze holds all their batches (0: keep forever)")
	fs.DurationVar(&c.VacuumRetention, "vacuum-retention", stages.DefaultVacuumRetention, "delta.deletedFileRetentionDuration written into new tables: how long removed files stay (negative: no vacuum)")
	fs.DurationVar(&c.LogRetention, "log-retention", stages.DefaultLogRetention, "delta.logRetentionDuration written into new tables: how far back time travel reaches (negative: no log cleanup)")
	fs.StringVar(&c.CheckpointPolicy, "checkpoint-policy", delta.CheckpointV2, "checkpoint kind of the tables the stages create: v2 (V2 checkpoints whose sidecars later checkpoints reuse; readers need Delta Lake 3.x, Databricks Runtime 13.3 LTS+ or delta-kernel-rs) or classic (V1 checkpoints every Delta reader reads); existing tables keep theirs")
	fs.DurationVar(&c.ForgetAfter, "forget-after", stages.DefaultForgetAfter, "devices and boots unseen this long leave memory, state and metrics (negative: never)")
	fs.BoolVar(&c.FinaliseOnStop, "finalise-on-stop", false, "a clean stop finalises every open silver window (readings for them that come after a restart then go to silver_late); default: windows of devices still sending stay open in the stage state and the next start goes on with them (those of agents that stopped, whose last batch says so, are final already)")
	fs.DurationVar(&c.LandingLinger, "landing-linger", landing.DefaultSegmentLinger, "how long a landing segment waits for more batches before it is written (0: not at all); adds at most this to the acknowledgement time")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", "127.0.0.1:9102", "HTTP address for /metrics, /healthz, /readyz (empty: off)")
	fs.StringVar(&c.MetricsAllowedHosts, "metrics-allowed-hosts", "", "comma-separated host names that may reach /metrics, /healthz and /readyz besides localhost and the --metrics-addr host; other Host headers get 421")
	fs.StringVar(&c.LogFormat, "log-format", "auto", "log format: json, text, or auto (text on a terminal)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.CPUProfile, "cpu-profile", "", "write a CPU profile (pprof) of the whole run to this file")
	fs.BoolVar(&c.Stages, "stages", true, "run bronze/silver/gold here; false: land only (tables built elsewhere, or by a later collector's recovery)")
	fs.StringVar(&c.BronzeAppend, "bronze-append", "", "with --stages=false: append what this collector lands to bronze itself, as NAME (unique per lake, the same across restarts; Delta txn app id pilake-bronze-NAME); silver and gold are then built elsewhere (scripts/databricks)")
	fs.BoolVar(&c.Rollups, "rollups", true, "with --stages, maintain silver's rollup tiers silver_10s, silver_1m, silver_1h (collector/rollup) for the dashboard's long ranges")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve /debug/pprof/ on the metrics address")
	fs.BoolVar(&c.Live, "live", true, "publish live updates (provisional silver/gold) on pilake/v1/live/{device}")
	return fs
}

// loadConfig reads flags, the file and the environment.
func loadConfig(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (Config, error) {
	var c Config
	fs := newFlagSet(&c)
	fs.SetOutput(stderr)
	if err := conf.Load(fs, args, "PILAKE_", lookupEnv); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate reports settings a user must fix.
func (c Config) Validate() error {
	var errs []error
	if c.BronzeAppend != "" && (c.Stages || !bronzeapp.ValidName(c.BronzeAppend)) {
		errs = append(errs, fmt.Errorf("--bronze-append %q: needs --stages=false and a name of 1-40 a-z, 0-9 and -", c.BronzeAppend))
	}
	if c.CheckpointPolicy != delta.CheckpointV2 && c.CheckpointPolicy != delta.CheckpointClassic {
		errs = append(errs, fmt.Errorf("--checkpoint-policy %q: want v2 or classic", c.CheckpointPolicy))
	}
	if c.AzureContainer == "" && c.Lake == "" {
		errs = append(errs, errors.New("no lake: give --lake DIR or --azure-container"))
	}
	if c.AzureContainer != "" && c.AzureConnectionString == "" && c.AzureKey == "" && c.AzureSAS == "" {
		errs = append(errs, errors.New("--azure-container needs --azure-connection-string, --azure-account with --azure-key, or --azure-sas"))
	}
	if (c.AzureKey != "" || c.AzureSAS != "") && c.AzureAccount == "" && c.AzureEndpoint == "" && c.AzureConnectionString == "" {
		errs = append(errs, errors.New("--azure-key/--azure-sas need --azure-account or --azure-endpoint"))
	}
	if c.Broker == "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("--listen %q: want host:port", c.Listen))
		}
	} else if !strings.Contains(c.Broker, "://") {
		errs = append(errs, fmt.Errorf("--broker %q: want a URL like tcp://host:1883", c.Broker))
	}
	if c.Broker == "" && !broker.Loopback(c.Listen) {
		if c.TLSCert == "" || c.TLSKey == "" || (c.FleetKeyFile == "" && c.TLSClientCA == "") {
			errs = append(errs, fmt.Errorf("--listen %s is beyond loopback: it needs --tls-cert, --tls-key and --fleet-key-file and/or --tls-client-ca", c.Listen))
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("--tls-client-ca needs --tls-cert and --tls-key"))
	}
	if c.MaxConnections < 1 || c.MaxConnectionsPerSource < 1 || c.MaxInflight < 1 || c.MaxInflight > 65535 {
		errs = append(errs, errors.New("--max-connections, --max-connections-per-source and --max-inflight (at most 65535) must be positive"))
	}
	if c.MaxKeepalive < 1 || c.MaxKeepalive > 65535 || c.MaxRetained < 1 || c.IoTHubMaxFileBytes < 1 || c.IoTHubMaxBlockBytes < 1 || c.IoTHubMaxMapEntries < 1 {
		errs = append(errs, errors.New("--max-keepalive (1-65535), --max-retained and the --iothub-max-* limits must be positive"))
	}
	if c.ConnectTimeout <= 0 || c.SessionExpiry < time.Second {
		errs = append(errs, errors.New("--connect-timeout must be positive and --session-expiry at least 1s"))
	}
	if c.ShareGroup != "" && (strings.ContainsAny(c.ShareGroup, "/+#") || c.Broker == "") {
		errs = append(errs, errors.New("--share-group needs --broker and may not contain / + #"))
	}
	if c.IoTHubRoutingPrefix != "" && c.AzureContainer == "" && c.IoTHubRoutingContainer != "" {
		errs = append(errs, errors.New("--iothub-routing-container needs the Azure lake's credentials"))
	}
	if c.IoTHubPollInterval <= 0 {
		errs = append(errs, errors.New("--iothub-poll-interval must be positive"))
	}
	if _, err := c.movingAverages(); err != nil {
		errs = append(errs, err)
	}
	if err := c.stageOptions(nil).Validate(); err != nil {
		errs = append(errs, err)
	}
	switch c.LogFormat {
	case "auto", "json", "text":
	default:
		errs = append(errs, fmt.Errorf("--log-format %q: want auto, json or text", c.LogFormat))
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(c.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	if c.Workers < 1 {
		errs = append(errs, errors.New("--workers must be at least 1"))
	}
	if c.LandingLinger < 0 || c.LandingLinger > time.Second {
		errs = append(errs, fmt.Errorf("--landing-linger %v: want 0 to 1s", c.LandingLinger))
	}
	return errors.Join(errs...)
}

func (c Config) movingAverages() ([]int, error) {
	var out []int
	for _, f := range strings.Split(c.MovingAverages, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--moving-averages %q: want positive window counts like 8,15,60", c.MovingAverages)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("--moving-averages: want at least one length")
	}
	return out, nil
}

func (c Config) stageOptions(log *slog.Logger) stages.Options {
	mas, _ := c.movingAverages()
	return stages.Options{
		Window: c.Window, AllowedLateness: c.AllowedLateness, MovingAverages: mas,
		MaxSkew: c.MaxSkew, MaxAhead: c.MaxAhead, CommitInterval: c.CommitInterval, Logger: log,
		LandingRetention: c.landingRetention(), VacuumRetention: c.VacuumRetention, LogRetention: c.LogRetention,
		ForgetAfter: c.ForgetAfter, CheckpointPolicy: c.CheckpointPolicy, KeepOpenOnStop: !c.FinaliseOnStop,
	}
}

// landingRetention maps the flag's 0 (keep forever) to the stages' negative.
func (c Config) landingRetention() time.Duration {
	if c.LandingRetention == 0 {
		return -1
	}
	return c.LandingRetention
}

// brokerOptions returns the embedded broker's security and limits.
func (c Config) brokerOptions() (*broker.TLSOptions, broker.AuthOptions, broker.Limits, error) {
	var auth broker.AuthOptions
	if c.FleetKeyFile != "" {
		k, err := readFleetKey(c.FleetKeyFile)
		if err != nil {
			return nil, auth, broker.Limits{}, err
		}
		auth.FleetKey = k
	}
	auth.DenyFile = c.DenyFile
	var tlsOpts *broker.TLSOptions
	if c.TLSCert != "" {
		tlsOpts = &broker.TLSOptions{CertFile: c.TLSCert, KeyFile: c.TLSKey, ClientCAFile: c.TLSClientCA}
	}
	lim := broker.Limits{MaxConnections: c.MaxConnections, MaxConnectionsPerSource: c.MaxConnectionsPerSource,
		ConnectTimeout: c.ConnectTimeout, SessionExpiry: c.SessionExpiry, MessageExpiry: c.SessionExpiry, MaxInflight: c.MaxInflight,
		MaxKeepalive: uint16(min(c.MaxKeepalive, 65535)), MaxRetained: c.MaxRetained}
	return tlsOpts, auth, lim, nil
}

// brokerTLS builds the TLS configuration for an external broker from the
// --broker-tls-* files (nil when none is given).
func (c Config) brokerTLS() (*tls.Config, error) {
	if c.BrokerTLSCA == "" && c.BrokerTLSCert == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.BrokerTLSCA != "" {
		pem, err := os.ReadFile(c.BrokerTLSCA)
		if err != nil {
			return nil, fmt.Errorf("reading --broker-tls-ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--broker-tls-ca %s: no PEM certificates", c.BrokerTLSCA)
		}
	}
	if c.BrokerTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.BrokerTLSCert, c.BrokerTLSKey)
		if err != nil {
			return nil, fmt.Errorf("loading --broker-tls-cert/--broker-tls-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// readFleetKey reads a fleet key file: its text, surrounding white space
// removed, is the key.
func readFleetKey(name string) ([]byte, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("reading fleet key: %w", err)
	}
	k := bytes.TrimSpace(data)
	if len(k) < broker.MinFleetKeyLen {
		return nil, fmt.Errorf("fleet key in %s: %d bytes, want at least %d (make one with 'collector fleet-key')", name, len(k), broker.MinFleetKeyLen)
	}
	return k, nil
}

// logger builds the process logger.
func (c Config) logger(w *os.File) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(c.LogLevel))
	// No credential (a SAS signature in an Azure error's URL, a password in
	// a broker URL) reaches the log.
	ho := &slog.HandlerOptions{Level: lv, ReplaceAttr: redact.ReplaceAttr}
	format := c.LogFormat
	if format == "auto" {
		format = "json"
		if fi, err := w.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, ho))
	}
	return slog.New(slog.NewJSONHandler(w, ho))
}

func (c Config) azureOptions(container string) lake.AzureOptions {
	return lake.AzureOptions{
		ConnectionString: c.AzureConnectionString, Account: c.AzureAccount, Key: c.AzureKey,
		SAS: c.AzureSAS, Endpoint: c.AzureEndpoint, Container: container,
	}
}

// openLake opens the configured lake; onRetry counts lake errors.
func (c Config) openLake(ctx context.Context, onRetry func(op, name string, attempt int, err error)) (lake.Lake, error) {
	if c.AzureContainer == "" {
		return lake.NewLocal(c.Lake)
	}
	o := c.azureOptions(c.AzureContainer)
	o.Prefix, o.OnRetry = c.AzurePrefix, onRetry
	return lake.NewAzure(ctx, o)
}
