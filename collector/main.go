// Command collector is pilake's cloud side: it receives batches over MQTT
// (an embedded broker, or an external one) and from Azure IoT Hub routing
// files, lands them in the lake, and runs the bronze, silver and gold stages,
// publishing live updates for the dashboard.
//
//	collector --lake ./lake --listen 127.0.0.1:1883
//	collector fleet-key > fleet.key
//	collector device-token --fleet-key-file fleet.key --device pi-1 --ttl 720h
//
// SIGINT or SIGTERM stops taking messages, lets the stages finalise every open
// window and commit, and exits 0 with the lake consistent.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	pprofhttp "net/http/pprof"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/broker"
	"github.com/pilake/pilake/collector/bronzeapp"
	"github.com/pilake/pilake/collector/hostcheck"
	"github.com/pilake/pilake/collector/ingest"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/rollup"
	"github.com/pilake/pilake/collector/stages"
	"github.com/pilake/pilake/internal/gctune"
)

func main() {
	if ok, err := subcommand(os.Args[1:], os.Stdout, os.Stderr, time.Now()); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, "collector:", err)
			os.Exit(2)
		}
		return
	}
	cfg, err := loadConfig(os.Args[1:], os.LookupEnv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "collector:", err)
		os.Exit(2)
	}
	log := cfg.logger(os.Stderr)
	gctune.Apply() // GOGC=400 and a 448 MiB memory limit unless GOGC/GOMEMLIMIT are set
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "collector: cpu profile:", err)
			os.Exit(2)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log, nil); err != nil {
		log.Error("collector failed", "err", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// started tells tests where the collector listens.
type started struct {
	MQTT    string // tcp://host:port of the embedded broker, "" with --broker
	Metrics string // http://host:port, "" without --metrics-addr
}

// run runs the collector until ctx ends, then shuts down in order: stop
// ingest (nothing more is acknowledged), then let the stages drain, finalise
// and commit, then stop serving metrics.
func run(ctx context.Context, cfg Config, log *slog.Logger, onStart func(started)) error {
	var lakeRetries atomic.Uint64
	onRetry := func(op, name string, attempt int, err error) {
		lakeRetries.Add(1)
		log.Warn("lake request failed; retrying", "op", op, "name", name, "attempt", attempt, "err", err)
	}
	lk, err := cfg.openLake(ctx, onRetry)
	if err != nil {
		return fmt.Errorf("opening lake: %w", err)
	}

	var live *livePublisher
	so := cfg.stageOptions(log)
	publish := func(string, []byte) error { return errors.New("no MQTT connection for live updates yet") }
	var publishMu sync.RWMutex
	if cfg.Live {
		live = newLivePublisher(func(topic string, payload []byte) error {
			publishMu.RLock()
			p := publish
			publishMu.RUnlock()
			return p(topic, payload)
		}, log)
		so.Live = live.Offer
	}
	so.Release = landing.ReleaseBatch // the stages give landed batches back for reuse
	instance := landing.NewInstance()
	so.LocalInstance = instance // the stages' periodic scan skips our own segments
	// The stages' compaction and the rollups' passes take turns (their
	// working sets would add up in the heap's peak).
	so.UpkeepLock = new(sync.Mutex)
	pipeline, err := stages.New(lk, so)
	if err != nil {
		return err
	}
	submit := pipeline.Submit
	var appender *bronzeapp.Appender
	switch {
	case cfg.BronzeAppend != "":
		// Landing and bronze here, each collector under its own txn app id;
		// silver and gold elsewhere (scripts/databricks).
		// The stage collector's skew checks (--max-skew, --max-ahead); a
		// negative --max-skew turns both off, as there.
		maxAhead := cfg.MaxAhead
		if cfg.MaxSkew < 0 {
			maxAhead = -1
		}
		appender, err = bronzeapp.New(lk, bronzeapp.Options{Name: cfg.BronzeAppend, Instance: instance, CommitInterval: cfg.CommitInterval,
			CompatibleBronze: so.CompatibleBronze, MaxSkew: cfg.MaxSkew, MaxAhead: maxAhead, Release: landing.ReleaseBatch, Logger: log})
		if err != nil {
			return err
		}
		submit = appender.Submit
	case !cfg.Stages:
		// Landing only: a collector that runs the stages on the same lake
		// takes these segments into bronze (its scan), or its recovery does.
		submit = nil
	}
	// With an external broker, agents learn what landed from landing acks
	// (the broker's PUBACK says nothing about the lake); the embedded
	// broker's PUBACK is sent after landing and is enough.
	var acker *ingest.Acker
	var onDurable func(string, uint64, uint64)
	if cfg.Broker != "" {
		acker = &ingest.Acker{Logger: log}
		onDurable = acker.Landed
	}
	lander, err := landing.New(landing.Options{Lake: lk, Logger: log, Submit: submit, SegmentLinger: linger(cfg.LandingLinger), Instance: instance,
		ForgetAfter: cfg.ForgetAfter,
		OnDurable:   onDurable,
		QuarantineLimit: landing.QuarantineLimit{PerSecond: cfg.QuarantineRate, Burst: int(max(1, 10*cfg.QuarantineRate)),
			BytesPerSecond: cfg.QuarantineBytesRate, BurstBytes: int(max(1, 16*cfg.QuarantineBytesRate))},
		NewDeviceLimit: landing.NewDeviceLimit{PerSecond: cfg.NewDeviceRate, Burst: max(1, cfg.NewDeviceBurst)}})
	if err != nil {
		return err
	}

	// The stages run on their own context: they stop after ingest has.
	stagesCtx, stopStages := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStages()
	stagesDone := make(chan error, 1)
	if cfg.Stages {
		// Rollup tiers of silver, built from silver's Delta log as another
		// engine would read it; they stop with the stages (stagesDone is
		// sent once both have returned).
		rollCtx, stopRoll := context.WithCancel(stagesCtx)
		rollDone := make(chan struct{})
		if cfg.Rollups {
			roller := rollup.New(lk, rollup.Options{Logger: log, Grace: max(30*time.Second, so.AllowedLateness+20*time.Second),
				Table: so.TableOptions(), UpkeepLock: so.UpkeepLock})
			go func() { defer close(rollDone); _ = roller.Run(rollCtx) }()
		} else {
			close(rollDone)
		}
		go func() {
			err := pipeline.Run(stagesCtx)
			stopRoll()
			<-rollDone
			stagesDone <- err
		}()
	} else if appender != nil {
		// Registers this instance and appends what earlier instances landed
		// but never got into bronze, before any ingest.
		if err := appender.Start(ctx); err != nil {
			return err
		}
		log.Info("appending landed batches to bronze", "name", cfg.BronzeAppend, "txn_app_id", appender.AppID())
		go func() { stagesDone <- appender.Run(stagesCtx) }()
	} else {
		go func() { <-stagesCtx.Done(); stagesDone <- nil }()
	}

	ingestCtx, stopIngest := context.WithCancel(ctx)
	defer stopIngest()
	var ingestWG sync.WaitGroup
	var ready atomic.Bool
	var st started

	if live != nil {
		ingestWG.Add(1)
		go func() { defer ingestWG.Done(); live.Run(ingestCtx) }()
	}

	// Metrics and health, first: they answer during the stages' start-up
	// scan (/readyz 503 until ingest runs).
	var routing atomic.Pointer[ingest.Routing]
	var brokerRef atomic.Pointer[broker.Broker]
	var hostRefused atomic.Uint64
	var routingStats func() (uint64, uint64, uint64)
	if cfg.IoTHubRoutingPrefix != "" {
		routingStats = func() (uint64, uint64, uint64) {
			if r := routing.Load(); r != nil {
				return r.Stats()
			}
			return 0, 0, 0
		}
	}
	rate := newRateMeter(func() uint64 { return lander.Stats().Readings.Load() })
	ingestWG.Add(1)
	go func() { defer ingestWG.Done(); rate.run(ingestCtx, time.Second) }()
	var srv *http.Server
	stagesRunning := atomic.Bool{}
	stagesRunning.Store(true)
	if cfg.MetricsAddr != "" {
		reg := prometheus.NewRegistry()
		coll := newCollector(lander, pipeline, live, lakeRetries.Load, routingStats, rate.perSecond, brokerRef.Load, hostRefused.Load).withAcker(acker)
		coll.appender = appender
		coll.routingLimited = func() uint64 {
			if r := routing.Load(); r != nil {
				return r.Limited()
			}
			return 0
		}
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), coll)
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		// Per device and boot, the batch sequence numbers missing from bronze
		// (as of the last epoch): what agents lost or have not delivered yet.
		mux.HandleFunc("GET /healthz/gaps", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(pipeline.Gaps())
		})
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
			if !ready.Load() || !stagesRunning.Load() || ingestCtx.Err() != nil {
				http.Error(w, "not ready", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ready")
		})
		if cfg.Pprof {
			mux.HandleFunc("/debug/pprof/", pprofhttp.Index)
			mux.HandleFunc("/debug/pprof/profile", pprofhttp.Profile)
			mux.HandleFunc("/debug/pprof/trace", pprofhttp.Trace)
		}
		// A taken metrics port is not worth losing data over: log it and
		// keep collecting.
		if ln, err := net.Listen("tcp", cfg.MetricsAddr); err != nil {
			log.Error("metrics, /healthz and /readyz unavailable", "addr", cfg.MetricsAddr, "err", err)
		} else {
			allowed := hostcheck.Allowed(cfg.MetricsAddr, strings.Split(cfg.MetricsAllowedHosts, ","))
			srv = &http.Server{Handler: hostcheck.Handler(allowed, mux, func() { hostRefused.Add(1) }), ReadHeaderTimeout: 5 * time.Second}
			go func() { _ = srv.Serve(ln) }()
			st.Metrics = "http://" + ln.Addr().String()
			log.Info("metrics listening", "addr", ln.Addr().String())
		}
	}
	defer func() {
		if srv != nil {
			_ = srv.Close() // early returns; a clean shutdown has shut it down already
		}
	}()
	// Ingest starts once the stages have recovered and scanned landing/:
	// until then agents keep their batches (spool, broker session) instead
	// of blocking in Submit behind the scan.
	if cfg.Stages {
		log.Info("waiting for the stages to recover and scan landing/")
		select {
		case <-pipeline.Ready():
			// The devices the stages know are not new to the landing's
			// new-device rate limit.
			lander.KnowDevices(slices.Collect(maps.Keys(pipeline.Watermarks())))
		case <-pipeline.Done():
			// Run failed during recovery; its error is in stagesDone.
			stopIngest()
			err := shutdown(nil, &ingestWG, stopStages, stagesDone)
			if err == nil {
				err = errors.New("stopped before recovery completed")
			}
			return fmt.Errorf("stages: %w", err)
		case <-ctx.Done():
			stopIngest()
			return shutdown(nil, &ingestWG, stopStages, stagesDone)
		}
	}

	// MQTT: embedded broker, or an external one.
	var brk *broker.Broker
	// handle lands a telemetry message; authenticated is the device the
	// embedded broker authenticated the publisher as ("" if anonymous or
	// through an external broker).
	handle := func(ctx context.Context, authenticated, topic string, payload []byte) error {
		return lander.LandTopic(ctx, authenticated, topic, payload)
	}
	if cfg.Broker == "" {
		tlsOpts, auth, lim, err := cfg.brokerOptions()
		if err == nil {
			// Handlers end at brk.Close (which cancels them), not at the signal.
			brk, err = broker.New(context.WithoutCancel(ctx), broker.Options{Addr: cfg.Listen, TopicPrefix: wire.TopicPrefix + "telemetry/", Logger: log,
				Handler: handle, TLS: tlsOpts, Auth: auth, Limits: lim})
		}
		if err != nil {
			stopStages()
			<-stagesDone
			return err
		}
		publishMu.Lock()
		publish = func(topic string, payload []byte) error { return brk.Publish(topic, payload, 0) }
		publishMu.Unlock()
		if live != nil {
			live.watch(brk.HasSubscribers) // no dashboard, no encoding
		}
		brokerRef.Store(brk)
		st.MQTT = brk.URL()
		ready.Store(true)
		log.Info("embedded MQTT broker listening", "addr", brk.Addr().String())
	} else {
		tlsConf, err := cfg.brokerTLS()
		if err != nil {
			stopStages()
			<-stagesDone
			return err
		}
		q, err := ingest.NewMQTT(ingest.MQTTOptions{Broker: cfg.Broker, ClientID: cfg.ClientID, Username: cfg.MQTTUsername, TLS: tlsConf,
			Password: cfg.MQTTPassword, ShareGroup: cfg.ShareGroup, Workers: cfg.Workers, Handler: func(ctx context.Context, topic string, payload []byte) error { return handle(ctx, "", topic, payload) }, Logger: log,
			OnConnect: func() { ready.Store(true) }, OnConnectionLost: func(error) { ready.Store(false) }})
		if err != nil {
			stopStages()
			<-stagesDone
			return err
		}
		publishMu.Lock()
		// The live publisher reuses its buffer; paho may still hold the
		// payload after a publish timed out.
		publish = func(topic string, payload []byte) error { return q.Publish(topic, bytes.Clone(payload)) }
		publishMu.Unlock()
		acker.Publish = q.PublishAck
		ingestWG.Add(1)
		go func() {
			defer ingestWG.Done()
			acker.Run(ingestCtx)
		}()
		if cfg.Stages {
			ingestWG.Add(1)
			go func() {
				defer ingestWG.Done()
				acker.RunResendRequests(ingestCtx, pipeline, 30*time.Second)
			}()
		}
		ingestWG.Add(1)
		go func() {
			defer ingestWG.Done()
			if err := q.Run(ingestCtx); err != nil {
				log.Error("MQTT ingest stopped", "err", err)
			}
		}()
	}

	// IoT Hub routing files.
	if cfg.IoTHubRoutingPrefix != "" {
		files := lake.Lake(lk)
		if cfg.IoTHubRoutingContainer != "" {
			files, err = lake.NewAzure(ctx, cfg.azureOptions(cfg.IoTHubRoutingContainer))
			if err != nil {
				stopIngest()
				return errors.Join(fmt.Errorf("opening routing container: %w", err), shutdown(brk, &ingestWG, stopStages, stagesDone))
			}
		}
		r, err := ingest.NewRouting(ctx, ingest.RoutingOptions{
			Files: files, Prefix: cfg.IoTHubRoutingPrefix, State: lk, PollInterval: cfg.IoTHubPollInterval, Logger: log,
			Limits: ingest.RoutingLimits{MaxFileBytes: cfg.IoTHubMaxFileBytes, MaxBlockBytes: cfg.IoTHubMaxBlockBytes, MaxMapEntries: cfg.IoTHubMaxMapEntries},
			Handler: func(ctx context.Context, file string, rec ingest.RoutingRecord) error {
				m := landing.Message{Data: rec.Body, Source: "iothub", Topic: fmt.Sprintf("%s#%d", file, rec.Index),
					Device: rec.DeviceID, ReceivedAt: rec.EnqueuedTime}
				if rec.Err != nil {
					return lander.Quarantine(ctx, m, landing.KindEnvelope, rec.Err.Error())
				}
				// pilake batches as they are; the Raspberry Pi simulator's messages converted
				data, device, err := ingest.RoutedBatch(rec, wire.NewEncoder(wire.Binary))
				if err != nil {
					return lander.Quarantine(ctx, m, landing.KindEnvelope, "IoT Hub simulator message: "+err.Error())
				}
				m.Data, m.Device = data, device
				_, err = lander.Land(ctx, m)
				return err
			},
			Quarantine: func(ctx context.Context, file string, data []byte, reason string) error {
				return lander.Quarantine(ctx, landing.Message{Data: data, Source: "iothub", Topic: file}, landing.KindEnvelope, reason)
			},
		})
		if err != nil {
			stopIngest()
			return errors.Join(err, shutdown(brk, &ingestWG, stopStages, stagesDone))
		}
		routing.Store(r)
		ingestWG.Add(1)
		go func() { defer ingestWG.Done(); _ = r.Run(ingestCtx) }()
		log.Info("ingesting IoT Hub routing files", "prefix", cfg.IoTHubRoutingPrefix)
	}

	if onStart != nil {
		onStart(st)
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: stopping ingest, then committing")
	case runErr = <-stagesDone:
		// The stages stopped on their own: a lake that stayed down, or a
		// conflicting writer. Stop taking messages.
		stagesRunning.Store(false)
		log.Error("stages stopped", "err", runErr)
		stagesDone <- runErr
	}
	stopIngest()
	err = shutdown(brk, &ingestWG, stopStages, stagesDone)
	// Ingest and the stages have stopped: nothing lands any more.
	_ = lander.Close()
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	if err != nil {
		return fmt.Errorf("stages: %w", err)
	}
	ps := pipeline.Stats()
	log.Info("collector stopped", "batches_landed", lander.Stats().Batches.Load(), "bronze_readings", ps.Readings,
		"silver_rows", ps.SilverRows, "gold_rows", ps.GoldRows, "epochs", ps.Epochs)
	return nil
}

// shutdown stops ingest (the broker last: its handlers in progress are
// cancelled and their messages left unacknowledged), then the stages.
func shutdown(brk *broker.Broker, ingestWG *sync.WaitGroup, stopStages context.CancelFunc, stagesDone chan error) error {
	if brk != nil {
		_ = brk.Close()
	}
	ingestWG.Wait()
	stopStages()
	return <-stagesDone
}

// linger maps --landing-linger to landing.Options.SegmentLinger, where 0
// means the default and a negative value no wait.
func linger(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
