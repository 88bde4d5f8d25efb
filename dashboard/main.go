package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	_ "github.com/databricks/databricks-sql-go" // registers the "databricks" driver
	dbsqllog "github.com/databricks/databricks-sql-go/logger"
	"github.com/rs/zerolog"
	zlog "github.com/rs/zerolog/log"

	"github.com/pilake/pilake/agent/redact"
	"github.com/pilake/pilake/collector/hostcheck"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/dashboard/history"
	"github.com/pilake/pilake/dashboard/live"
	"github.com/pilake/pilake/dashboard/web"
)

func main() {
	// A soft memory limit unless GOMEMLIMIT says otherwise: the history page
	// cache (96 MiB) is most of the live heap, and without a limit the GC
	// lets the heap grow to twice that; issue 11 asks for RSS < 256 MiB.
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(200 << 20)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.LookupEnv, os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
}

// run starts the dashboard and serves until ctx ends. If ready is not nil it
// receives the base URL once the listener is up.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stderr io.Writer, ready chan<- string) error {
	cfg, err := loadConfig(args, lookupEnv)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	// ReplaceAttr: no credential (a SAS signature in an Azure error's URL, a
	// password in a broker URL) reaches the log.
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: redact.ReplaceAttr}))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hub := live.NewHub(cfg.Ring, nil)
	hub.SetMaxBytes(cfg.RingBytes)
	done := make(chan error, 2)
	workers := 0

	var hist history.Source
	switch cfg.Source {
	case "lake":
		lk, where, err := openLake(ctx, cfg)
		if err != nil {
			return err
		}
		lh := history.NewLake(lk, int32(cfg.GoldN))
		lh.Logger = log
		hist = lh
		go lh.Warm(ctx) // replay the tables' logs now, not on the first page load
		log.Info("history from the lake", "lake", where)
		if cfg.Broker != "" {
			mqttTLS, err := cfg.mqttTLS()
			if err != nil {
				return err
			}
			workers++
			go func() {
				done <- live.RunMQTT(ctx, live.MQTTOptions{Broker: cfg.Broker, GoldN: int32(cfg.GoldN), Logger: log,
					Username: cfg.MQTTUsername, Password: string(cfg.MQTTPassword), TLS: mqttTLS}, hub, nil)
			}()
		} else {
			hub.SetStatus("offline", "none", "no --broker: live feed disabled")
		}
	case "databricks":
		db, err := openDatabricks(cfg.Databricks)
		if err != nil {
			return err
		}
		defer db.Close()
		src := &history.SQL{DB: db, SilverTable: cfg.SQLSilverTable, GoldTable: cfg.SQLGoldTable, GoldN: int32(cfg.GoldN),
			MaxRows: cfg.SQLMaxRows, Logger: log}
		if err := src.Validate(); err != nil {
			return err
		}
		hist = src
		name := "databricks " + cfg.Databricks.Host
		auth := []any{"token", cfg.Databricks.Token}
		if cfg.Databricks.ClientID != "" {
			auth = []any{"oauth_m2m_client_id", cfg.Databricks.ClientID, "client_secret", cfg.Databricks.ClientSecret}
		}
		hours, _ := history.ParseHours(cfg.SQLPollHours, time.Local) // checked by Validate
		log.Info("history and live from Databricks SQL", append([]any{"host", cfg.Databricks.Host, "http_path", cfg.Databricks.HTTPPath,
			"silver", cfg.SQLSilverTable, "gold", cfg.SQLGoldTable, "poll", cfg.SQLPoll, "poll_hours", cfg.SQLPollHours,
			"poll_while_nobody_watches", cfg.SQLPollIdle}, auth...)...)
		p := &history.Poller{Source: src, Hub: hub, Interval: cfg.SQLPoll, Timeout: cfg.SQLTimeout, Name: name, Logger: log,
			Hours: hours, OnlyWatched: !cfg.SQLPollIdle}
		workers++
		go func() { done <- p.Run(ctx) }()
	}

	if !web.HasChartLibrary() {
		log.Warn("built without the chart library: run dashboard/web/build.sh, then go build ./dashboard")
	}
	srv := &Server{
		History:      hist,
		Hub:          hub,
		SSE:          &live.SSE{Hub: hub, Interval: cfg.Coalesce, MaxClients: cfg.MaxLive, Logger: log},
		Assets:       web.FS(),
		MaxPoints:    cfg.MaxPts,
		Auth:         cfg.Auth,
		Logger:       log,
		QueryTimeout: cfg.SQLTimeout,
		AllowedHosts: hostcheck.Allowed(cfg.Listen, strings.Split(cfg.AllowedHosts, ",")),
	}
	if len(srv.AllowedHosts) == 0 {
		log.Warn("serving any Host header: give --allowed-hosts (the names browsers use) to refuse DNS-rebinding requests")
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	// SSE streams end when ctx does, so Shutdown does not wait for them.
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	base := "http://" + ln.Addr().String() + "/"
	log.Info("dashboard listening", "url", base, "source", cfg.Source, "auth", cfg.Auth.Enabled())
	if ready != nil {
		ready <- base
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()

	select {
	case <-ctx.Done():
	case err = <-serveErr:
		cancel()
		return fmt.Errorf("serving HTTP: %w", err)
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("shutting down HTTP server", "err", err)
	}
	var errs []error
	for ; workers > 0; workers-- {
		if err := <-done; err != nil {
			errs = append(errs, err)
		}
	}
	log.Info("dashboard stopped")
	return errors.Join(errs...)
}

func openLake(ctx context.Context, cfg Config) (lake.Lake, string, error) {
	if cfg.AzureContainer == "" {
		lk, err := lake.NewLocal(cfg.Lake)
		if err != nil {
			return nil, "", fmt.Errorf("opening lake %s: %w", cfg.Lake, err)
		}
		return lk, cfg.Lake, nil
	}
	lk, err := lake.NewAzure(ctx, lake.AzureOptions{
		ConnectionString: cfg.AzureConnectionString,
		Account:          cfg.AzureAccount,
		Key:              cfg.AzureKey.Reveal(),
		SAS:              cfg.AzureSAS.Reveal(),
		Endpoint:         cfg.AzureEndpoint,
		Container:        cfg.AzureContainer,
		Prefix:           cfg.AzurePrefix,
		Retry:            lake.RetryPolicy{MaxAttempts: 3},
	})
	if err != nil {
		return nil, "", fmt.Errorf("opening Azure lake (container %s): %w", cfg.AzureContainer, err)
	}
	return lk, "azure container " + cfg.AzureContainer, nil
}

// databricksDSN builds the databricks-sql-go DSN: a personal access token, or
// a service principal's client id and secret (the driver's OAuth M2M: it
// fetches and refreshes tokens from the workspace's OIDC endpoint), port 443
// unless the host names one, telemetry off.
func databricksDSN(d Databricks) string {
	host := strings.TrimPrefix(strings.TrimPrefix(d.Host, "https://"), "http://")
	host = strings.TrimSuffix(host, "/")
	if _, _, err := net.SplitHostPort(host); err != nil {
		host += ":443"
	}
	path := d.HTTPPath
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := url.URL{User: url.UserPassword("token", d.Token.Reveal()), Host: host, Path: path, RawQuery: "enableTelemetry=false"}
	if d.ClientID != "" {
		q := url.Values{"authType": {"OauthM2M"}, "clientID": {d.ClientID}, "clientSecret": {d.ClientSecret.Reveal()}, "enableTelemetry": {"false"}}
		u.User, u.RawQuery = nil, q.Encode()
	}
	return strings.TrimPrefix(u.String(), "//")
}

// openDatabricks opens the SQL warehouse. Errors never quote the DSN (it holds
// the token), and the driver's own logger is silenced for the same reason.
func openDatabricks(d Databricks) (*sql.DB, error) {
	_ = dbsqllog.SetLogLevel("disabled")
	// Its OAuth code logs through zerolog's global logger, not the one above.
	zlog.Logger = zlog.Logger.Level(zerolog.Disabled)
	db, err := sql.Open("databricks", databricksDSN(d))
	if err != nil {
		return nil, fmt.Errorf("configuring Databricks SQL connection to %s: %s", d.Host, publicError(err))
	}
	return db, nil
}
