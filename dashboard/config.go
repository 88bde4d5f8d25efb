package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/pilake/pilake/dashboard/history"
	"github.com/pilake/pilake/dashboard/live"
	"github.com/pilake/pilake/internal/conf"
)

// Secret is a string that never shows itself in logs, fmt or JSON.
type Secret string

const redacted = "[redacted]"

func (Secret) String() string               { return redacted }
func (Secret) GoString() string             { return redacted }
func (Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (s Secret) Reveal() string             { return string(s) }
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

var _ slog.LogValuer = Secret("")

// Config is the dashboard's configuration.
type Config struct {
	Listen   string
	Lake     string
	Broker   string
	Source   string // "lake" or "databricks"
	GoldN    int
	MaxPts   int
	Coalesce time.Duration
	Ring     int
	MaxLive  int
	// AllowedHosts: Host header names served besides the loopback names and the listen host.
	AllowedHosts string
	// MQTT credentials for the live feed (the collector's embedded broker
	// beyond loopback needs a dashboard identity: a token or a certificate).
	MQTTUsername                       string
	MQTTPassword                       Secret
	MQTTTLSCA, MQTTTLSCert, MQTTTLSKey string
	// RingBytes bounds the live ring's memory.
	RingBytes int64
	LogLevel  string

	// Azure lake (used when AzureContainer is set).
	AzureContainer, AzureConnectionString, AzureAccount, AzureEndpoint, AzurePrefix string
	AzureKey, AzureSAS                                                              Secret

	// Databricks SQL source.
	SQLSilverTable, SQLGoldTable string
	SQLPoll, SQLTimeout          time.Duration
	SQLMaxRows                   int
	SQLPollHours                 string
	SQLPollIdle                  bool
	Databricks                   Databricks

	// Auth for non-loopback listening (from the environment only).
	Auth Auth
}

// Databricks holds the SQL warehouse's connection settings.
type Databricks struct {
	Host, HTTPPath string
	// Token is a personal access token; or ClientID and ClientSecret are a
	// service principal's OAuth machine-to-machine credentials.
	Token        Secret
	ClientID     string
	ClientSecret Secret
}

// Auth is what a browser must present when the dashboard listens beyond loopback.
type Auth struct {
	Token    Secret
	User     string
	Password Secret
}

// Enabled reports whether any credential is set.
func (a Auth) Enabled() bool { return a.Token != "" || a.User != "" }

// mqttTLS builds the live feed's TLS configuration from the --mqtt-tls-*
// files (nil when none is given).
func (c Config) mqttTLS() (*tls.Config, error) {
	if c.MQTTTLSCA == "" && c.MQTTTLSCert == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.MQTTTLSCA != "" {
		pem, err := os.ReadFile(c.MQTTTLSCA)
		if err != nil {
			return nil, fmt.Errorf("reading --mqtt-tls-ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--mqtt-tls-ca %s: no PEM certificates", c.MQTTTLSCA)
		}
	}
	if c.MQTTTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.MQTTTLSCert, c.MQTTTLSKey)
		if err != nil {
			return nil, fmt.Errorf("loading --mqtt-tls-cert/--mqtt-tls-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// loadConfig parses flags (with internal/conf's file and PILAKE_* layers) and
// the secrets that only come from the environment.
func loadConfig(args []string, lookupEnv func(string) (string, bool)) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("dashboard", flag.ContinueOnError)
	fs.String(conf.ConfigFlag, "", "configuration file (name = value lines)")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:8050", "HTTP listen address; beyond loopback it needs PILAKE_DASHBOARD_TOKEN or PILAKE_DASHBOARD_USER/PASSWORD")
	fs.StringVar(&c.Lake, "lake", "./lake", "local lake directory (when no --azure-container)")
	fs.StringVar(&c.Broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker carrying the collector's live feed (empty: no live feed)")
	fs.StringVar(&c.Source, "source", "lake", "history source: lake or databricks")
	fs.IntVar(&c.GoldN, "gold-n", 8, "moving-average length (windows) of the gold series shown")
	fs.IntVar(&c.MaxPts, "max-points", 1500, "most points per series in a history response (server-side decimation)")
	fs.DurationVar(&c.Coalesce, "coalesce", 100*time.Millisecond, "least time between two live messages to one browser")
	fs.IntVar(&c.Ring, "ring", 16384, "live updates kept for browsers that reconnect (Last-Event-ID) and to fill the newest history the lake has not committed yet")
	fs.StringVar(&c.AllowedHosts, "allowed-hosts", "", "comma-separated host names browsers use to reach the dashboard, besides localhost and the --listen host; other Host headers get 421 (DNS-rebinding defence)")
	fs.StringVar(&c.MQTTUsername, "mqtt-username", "", "MQTT username for the live feed (the dashboard identity of a 'collector device-token --role dashboard')")
	fs.Func("mqtt-password", "MQTT password for the live feed (prefer PILAKE_MQTT_PASSWORD)", func(v string) error { c.MQTTPassword = Secret(v); return nil })
	fs.StringVar(&c.MQTTTLSCA, "mqtt-tls-ca", "", "PEM CA bundle to verify the broker's certificate (ssl:// brokers; default: the system's)")
	fs.StringVar(&c.MQTTTLSCert, "mqtt-tls-cert", "", "PEM client certificate for the broker (mutual TLS; identity in its URI SAN pilake://dashboard/NAME)")
	fs.StringVar(&c.MQTTTLSKey, "mqtt-tls-key", "", "PEM client key (with --mqtt-tls-cert)")
	fs.Int64Var(&c.RingBytes, "ring-bytes", live.DefaultRingBytes, "most bytes of live updates kept in the ring (the oldest go first); bounds memory whatever the updates' size")
	fs.IntVar(&c.MaxLive, "max-live-clients", 1000, "most concurrent live streams (browsers); more get 503")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.AzureContainer, "azure-container", "", "read the lake from this Azure Blob / ADLS Gen2 container instead of --lake")
	fs.StringVar(&c.AzureConnectionString, "azure-connection-string", "", "Azure Storage connection string (prefer PILAKE_AZURE_CONNECTION_STRING)")
	fs.StringVar(&c.AzureAccount, "azure-account", "", "Azure storage account (with --azure-key or --azure-sas)")
	fs.Func("azure-key", "Azure storage account key (prefer PILAKE_AZURE_KEY)", func(v string) error { c.AzureKey = Secret(v); return nil })
	fs.Func("azure-sas", "Azure SAS token (prefer PILAKE_AZURE_SAS)", func(v string) error { c.AzureSAS = Secret(v); return nil })
	fs.StringVar(&c.AzureEndpoint, "azure-endpoint", "", "Azure Blob endpoint (default https://{account}.blob.core.windows.net)")
	fs.StringVar(&c.AzurePrefix, "azure-prefix", "", "object name prefix of the lake inside the container")
	fs.StringVar(&c.SQLSilverTable, "sql-silver-table", "silver", "silver table name for --source databricks")
	fs.StringVar(&c.SQLGoldTable, "sql-gold-table", "gold", "gold table name for --source databricks")
	fs.DurationVar(&c.SQLPoll, "sql-poll", 2*time.Second, "how often --source databricks polls for new rows")
	fs.DurationVar(&c.SQLTimeout, "sql-timeout", 30*time.Second, "bound on one history query or poll (both sources)")
	fs.IntVar(&c.SQLMaxRows, "sql-max-rows", 2000000, "most rows one history request reads from --source databricks (more is an error, never a silent cut)")
	fs.StringVar(&c.SQLPollHours, "sql-poll-hours", "", "poll --source databricks only between these local times (HH:MM-HH:MM; empty: always), so the warehouse can auto-stop off hours")
	fs.BoolVar(&c.SQLPollIdle, "sql-poll-idle", false, "poll --source databricks even while no browser has the live view open (default: pause, so the warehouse can auto-stop)")
	if err := conf.Load(fs, args, "PILAKE_", lookupEnv); err != nil {
		return c, err
	}
	env := func(names ...string) string {
		for _, n := range names {
			if v, ok := lookupEnv(n); ok && v != "" {
				return v
			}
		}
		return ""
	}
	c.Databricks = Databricks{
		Host:     env("SERVER_HOSTNAME", "DATABRICKS_SERVER_HOSTNAME", "DATABRICKS_HOST"),
		HTTPPath: env("HTTP_PATH", "DATABRICKS_HTTP_PATH"),
		Token:    Secret(env("ACCESS_TOKEN", "DATABRICKS_ACCESS_TOKEN", "DATABRICKS_TOKEN")),
		// a service principal (OAuth M2M), named as the Databricks CLI and SDKs name them
		ClientID:     env("CLIENT_ID", "DATABRICKS_CLIENT_ID"),
		ClientSecret: Secret(env("CLIENT_SECRET", "DATABRICKS_CLIENT_SECRET")),
	}
	c.Auth = Auth{
		Token:    Secret(env("PILAKE_DASHBOARD_TOKEN")),
		User:     env("PILAKE_DASHBOARD_USER"),
		Password: Secret(env("PILAKE_DASHBOARD_PASSWORD")),
	}
	return c, c.Validate()
}

// Validate checks the configuration as a user would want it explained.
func (c *Config) Validate() error {
	var errs []error
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: want host:port: %w", c.Listen, err))
	} else if !isLoopback(host) && !c.Auth.Enabled() {
		errs = append(errs, fmt.Errorf("--listen %s is not a loopback address: set PILAKE_DASHBOARD_TOKEN, or PILAKE_DASHBOARD_USER and PILAKE_DASHBOARD_PASSWORD, in the environment so that only you can see the dashboard", c.Listen))
	}
	if (c.Auth.User == "") != (c.Auth.Password == "") {
		errs = append(errs, errors.New("set both PILAKE_DASHBOARD_USER and PILAKE_DASHBOARD_PASSWORD, or neither"))
	}
	switch c.Source {
	case "lake":
		if c.AzureContainer == "" && c.Lake == "" {
			errs = append(errs, errors.New("--lake is empty and no --azure-container is set"))
		}
	case "databricks":
		var missing []string
		if c.Databricks.Host == "" {
			missing = append(missing, "SERVER_HOSTNAME")
		}
		if c.Databricks.HTTPPath == "" {
			missing = append(missing, "HTTP_PATH")
		}
		m2m := c.Databricks.ClientID != "" || c.Databricks.ClientSecret != ""
		switch {
		case c.Databricks.Token != "" && m2m:
			errs = append(errs, errors.New("--source databricks: set ACCESS_TOKEN or CLIENT_ID and CLIENT_SECRET, not both"))
		case m2m && (c.Databricks.ClientID == "" || c.Databricks.ClientSecret == ""):
			missing = append(missing, "CLIENT_ID and CLIENT_SECRET (both)")
		case !m2m && c.Databricks.Token == "":
			missing = append(missing, "ACCESS_TOKEN (or CLIENT_ID and CLIENT_SECRET of a service principal)")
		}
		if len(missing) > 0 {
			errs = append(errs, fmt.Errorf("--source databricks needs %s in the environment (or DATABRICKS_-prefixed)", strings.Join(missing, ", ")))
		}
		if _, err := history.ParseHours(c.SQLPollHours, time.Local); err != nil {
			errs = append(errs, fmt.Errorf("--sql-poll-hours: %w", err))
		}
		if c.SQLMaxRows < 1 {
			errs = append(errs, errors.New("--sql-max-rows must be positive"))
		}
		for _, t := range []string{c.SQLSilverTable, c.SQLGoldTable} {
			if !history.ValidTableName(t) {
				errs = append(errs, fmt.Errorf("table name %q: want [catalog.][schema.]table of letters, digits and _, or delta.`path`", t))
			}
		}
		if c.SQLPoll <= 0 || c.SQLTimeout <= 0 {
			errs = append(errs, errors.New("--sql-poll and --sql-timeout must be positive"))
		}
	default:
		errs = append(errs, fmt.Errorf("--source %q: want lake or databricks", c.Source))
	}
	if c.GoldN < 1 || c.GoldN > 1<<20 {
		errs = append(errs, fmt.Errorf("--gold-n %d: want a positive window count", c.GoldN))
	}
	if c.MaxPts < 10 {
		errs = append(errs, fmt.Errorf("--max-points %d: want at least 10", c.MaxPts))
	}
	if c.Coalesce < 0 {
		errs = append(errs, errors.New("--coalesce must not be negative"))
	}
	if c.MaxLive < 1 {
		errs = append(errs, errors.New("--max-live-clients must be at least 1"))
	}
	if c.Ring < 1 {
		errs = append(errs, errors.New("--ring must be at least 1"))
	}
	if c.RingBytes < 1<<20 {
		errs = append(errs, errors.New("--ring-bytes must be at least 1 MiB"))
	}
	return errors.Join(errs...)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
