package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"periph.io/x/conn/v3/physic"

	"github.com/pilake/pilake/agent/clock"
	"github.com/pilake/pilake/agent/iothub"
	"github.com/pilake/pilake/agent/redact"
	"github.com/pilake/pilake/agent/sample"
	"github.com/pilake/pilake/agent/spool"
	"github.com/pilake/pilake/agent/uplink"
	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/hw"
	"github.com/pilake/pilake/internal/backoff"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.LookupEnv, os.Stderr))
}

// run is the whole program; it returns the exit status.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stderr io.Writer) int {
	return runWith(ctx, args, lookupEnv, stderr, options{})
}

// options are what tests change in a run beyond its configuration.
type options struct {
	// fake replaces the simulated bus of --simulate (tests inject faults).
	fake *hw.Fake
	// openBackoff is the first wait between attempts to open the sensor
	// (default 1 s; doubles up to 30 s).
	openBackoff time.Duration
}

// runWith is run with options.
func runWith(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stderr io.Writer, o options) int {
	cfg, fs, err := LoadConfig(args, lookupEnv)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "pilake-agent: configuration: %v\n", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	a, err := newAgent(cfg, log, o)
	if err != nil {
		log.Error("starting", "err", err)
		return exitStatus(err)
	}
	if err := a.Run(ctx); err != nil {
		log.Error("agent stopped with an error", "err", err)
		return exitStatus(err)
	}
	return 0
}

// exitStatus is 2 for errors no restart can fix (the wrong device at the
// configured address), 1 otherwise.
func exitStatus(err error) int {
	if permanentSensorError(err) {
		return 2
	}
	return 1
}

func newLogger(cfg *Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() == slog.KindDuration { // "5s", not 5000000000
			return slog.String(a.Key, a.Value.Duration().String())
		}
		return redact.ReplaceAttr(nil, a) // no broker password in any log line
	}}
	useJSON := cfg.LogFormat == "json"
	if cfg.LogFormat == "auto" {
		useJSON = true
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				useJSON = false // a terminal
			}
		}
	}
	if useJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// senseCloser is the sensor as the agent holds it.
type senseCloser interface {
	sample.Sensor
	HasHumidity() bool
	Rate() hw.Rate
	String() string
	Close() error
}

var _ senseCloser = (*hw.Sensor)(nil)

// Agent is one running agent: sampler → writer → spool → forwarder → broker.
type Agent struct {
	cfg   *Config
	log   *slog.Logger
	boot  uint64
	enc   wire.Encoding
	fake  *hw.Fake // with --simulate
	spool *spool.Spool
	conn  *uplink.MQTT
	fwd   *uplink.Forwarder
	topic func(rec *spool.Record) string

	// openSensor opens the sensor (the fake bus or the real one); the
	// sampler starts once it succeeds (see openLoop).
	openSensor  func() (senseCloser, error)
	openBackoff time.Duration
	// sampler is nil until the sensor has been opened.
	sampler  atomic.Pointer[sample.Sampler]
	lateHist prometheus.Histogram

	mu            sync.Mutex
	sensor        senseCloser // nil until opened
	openErr       error       // the last failed attempt to open the sensor
	openFails     int64
	openNext      time.Time // when the next attempt is due
	opening       time.Time // when the running attempt began (zero: none)
	absentSince   time.Time
	ackedSeqs     []uint64
	readingsAcked int64
	encodeErrors  int64
	oversizeDrops int64
	spoolErrors   int64
}

func randomBootID() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return uint64(time.Now().UnixNano())
	}
	return binary.LittleEndian.Uint64(b[:])
}

func newAgent(cfg *Config, log *slog.Logger, o options) (*Agent, error) {
	a := &Agent{cfg: cfg, log: log, boot: randomBootID(), openBackoff: o.openBackoff, lateHist: newLatenessHistogram(cfg.DeviceID)}
	if a.openBackoff <= 0 {
		a.openBackoff = time.Second
	}
	var err error
	if a.enc, err = cfg.WireEncoding(); err != nil {
		return nil, err
	}
	opts, err := cfg.SensorOpts()
	if err != nil {
		return nil, err
	}
	if cfg.Simulate {
		a.fake = o.fake
		if a.fake == nil {
			a.fake = hw.NewFake(hw.FakeConfig{Seed: hw.SeedFor(cfg.DeviceID), Addr: uint16(cfg.I2CAddr)})
		}
		a.openSensor = func() (senseCloser, error) { return hw.NewSensor(a.fake, a.fake.Addr(), &opts, cfg.AllowBMP280) }
	} else {
		a.openSensor = func() (senseCloser, error) {
			return hw.Open(hw.OpenConfig{Bus: cfg.I2CBus, Addr: uint16(cfg.I2CAddr), Opts: opts, AllowBMP280: cfg.AllowBMP280})
		}
	}
	// The sampler's settings are checked now, whether or not the sensor
	// answers yet: a configuration error is fatal at start, not later.
	if _, err := sample.New(a.samplerConfig(absentSensor{}, false, 0)); err != nil {
		return nil, err
	}
	// The sensor is opened by Run (openLoop), after the uplink has started:
	// neither a sensor that does not answer nor a bus that hangs keeps the
	// spool's backlog from being sent.
	a.absentSince = time.Now()
	policy, _ := spool.ParseFsyncPolicy(cfg.SpoolFsync)
	a.spool, err = spool.Open(spool.Options{
		Dir: cfg.SpoolDir, MaxBytes: int64(cfg.SpoolMax), Fsync: policy, FsyncInterval: cfg.SpoolFsyncInt,
		Logger: log.With(slog.String("component", "spool")),
	})
	if err != nil {
		a.closeLocal()
		return nil, fmt.Errorf("opening the spool: %w", err)
	}
	if st := a.spool.Stats(); st.Records > 0 {
		log.Info("spool holds a backlog from an earlier run", "dir", cfg.SpoolDir, "batches", st.Records, "readings", st.Readings, "bytes", st.Bytes)
	}
	if err := a.setupUplink(); err != nil {
		a.closeLocal()
		return nil, err
	}
	return a, nil
}

// permanentSensorError tells errors that retrying cannot fix: the device at
// the configured address is not one the configuration accepts.
func permanentSensorError(err error) bool {
	return errors.Is(err, hw.ErrBMP280) || errors.Is(err, hw.ErrNotBME280) || errors.Is(err, hw.ErrBadAddress)
}

// errSensorAbsent is what absentSensor returns.
var errSensorAbsent = errors.New("the sensor has not been opened")

// absentSensor lets newAgent check the sampler's settings before the sensor
// is open; it is never read.
type absentSensor struct{}

var _ sample.Sensor = absentSensor{}

func (absentSensor) Sense(*physic.Env) error { return errSensorAbsent }
func (absentSensor) Reinit() error           { return errSensorAbsent }

func (a *Agent) samplerConfig(sensor sample.Sensor, noHumidity bool, settle time.Duration) sample.Options {
	cfg := a.cfg
	synced, wallMinusMono := clock.Synced, clock.WallMinusMonoUS
	if steps, _ := parseClockSteps(cfg.SimClockSteps); len(steps) > 0 {
		// Tests: the wall clock as a Pi whose clock is set wrong and back
		// would show it; not synchronised while stepped.
		start := time.Now()
		off := func() time.Duration {
			var o time.Duration
			for _, st := range steps {
				if time.Since(start) >= st.after {
					o = st.total
				}
			}
			return o
		}
		synced = func() bool { return off() == 0 && clock.Synced() }
		wallMinusMono = func() int64 { return clock.WallMinusMonoUS() + off().Microseconds() }
	}
	return sample.Options{
		Sensor: sensor, DeviceID: cfg.DeviceID, BootID: a.boot,
		Rate: cfg.Rate, BatchInterval: cfg.BatchEvery, AlignBatches: cfg.AlignBatches, NoHumidity: noHumidity,
		ReadTimeout: cfg.ReadTimeout, FrozenAfter: cfg.FrozenAfter, DriverSense: cfg.DriverSense,
		Settle:      settle,
		ClockSynced: synced, WallMinusMono: wallMinusMono,
		LatenessObserver: a.lateHist,
		Logger:           a.log.With(slog.String("component", "sampler")),
	}
}

// tryOpen makes one attempt to open the sensor and, when it succeeds,
// creates the sampler (Run starts it). A failure is recorded for /healthz.
func (a *Agent) tryOpen() error {
	sensor, err := a.openSensor()
	if err != nil {
		a.mu.Lock()
		a.openErr = err
		a.openFails++
		a.mu.Unlock()
		return err
	}
	cfg := a.cfg
	rate := sensor.Rate()
	a.log.Info("sensor ready", "sensor", sensor.String(), "simulated", cfg.Simulate,
		"oversampling_t_p_h", fmt.Sprintf("%d/%d/%d", cfg.OsrsT, cfg.OsrsP, cfg.OsrsH), "filter", cfg.Filter,
		"standby", rate.Standby, "measure_time", rate.Measure,
		"conversions_per_s_typical", round1(rate.Typical), "conversions_per_s_min", round1(rate.Min),
		"poll_hz", cfg.Rate, "expected_fresh_ratio", round1(min(1, rate.Typical/cfg.Rate)*100)/100)
	if cfg.Rate < rate.Min {
		a.log.Warn("polling slower than the sensor converts: some conversions are never read", "poll_hz", cfg.Rate, "conversions_per_s", round1(rate.Min))
	}
	smp, err := sample.New(a.samplerConfig(sensor, !sensor.HasHumidity(), rate.Measure+rate.Standby+5*time.Millisecond))
	if err != nil { // checked in newAgent: cannot happen
		_ = sensor.Close()
		return err
	}
	a.mu.Lock()
	a.sensor = sensor
	a.mu.Unlock()
	a.sampler.Store(smp)
	return nil
}

// openLoop opens the sensor, retrying with backoff (openBackoff doubling up
// to maxOpenBackoff) until it succeeds, ctx ends (ctx's error) or the
// device turns out to be the wrong one: a BMP280 without --allow-bmp280 or
// another chip id is a configuration error no retry fixes, returned.
// Anything else (nothing answers, no I2C bus yet) is retried.
func (a *Agent) openLoop(ctx context.Context) error {
	// Waits double from openBackoff, no jitter; the first attempt is at once.
	retry := backoff.Backoff{Min: a.openBackoff, Max: maxOpenBackoff}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		a.mu.Lock()
		a.opening = time.Now()
		a.mu.Unlock()
		err := a.tryOpen()
		wait := retry.Next()
		a.mu.Lock()
		a.opening = time.Time{}
		a.openNext = time.Now().Add(wait)
		fails, since := a.openFails, a.absentSince
		a.mu.Unlock()
		switch {
		case err == nil:
			if fails > 0 {
				a.log.Info("sensor found: sampling starts", "failed_attempts", fails, "absent_for", time.Since(since).Round(time.Millisecond))
			}
			return nil
		case permanentSensorError(err):
			return fmt.Errorf("opening the sensor: %w", err)
		case fails == 1:
			a.log.Warn("sensor not available: the agent runs without it and keeps trying", "err", err, "retry_in", wait)
		default:
			a.log.Warn("sensor still not available", "err", err, "failed_attempts", fails, "retry_in", wait)
		}
		t.Reset(wait)
	}
}

// maxOpenBackoff caps the wait between attempts to open the sensor.
const maxOpenBackoff = 30 * time.Second

// samplerStats are the sampler's counters (zero before the sensor is open).
func (a *Agent) samplerStats() sample.Stats {
	if s := a.sampler.Load(); s != nil {
		return s.Stats()
	}
	return sample.Stats{}
}

// emptyHist is the lateness before sampling starts.
var emptyHist sample.Hist

// lateness is the sampler's tick lateness histogram (empty before the
// sensor is open).
func (a *Agent) lateness() *sample.Hist {
	if s := a.sampler.Load(); s != nil {
		return s.Lateness()
	}
	return &emptyHist
}

// sensorHealth is the sampler's view of the sensor, or, before the sensor
// could be opened, state "absent" with the reason.
func (a *Agent) sensorHealth() sample.Health {
	if s := a.sampler.Load(); s != nil {
		return s.Health()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	h := sample.Health{State: "absent", Since: a.absentSince, ConsecutiveErrors: int(a.openFails)}
	switch {
	case !a.opening.IsZero():
		h.LastError = fmt.Sprintf("opening the sensor: attempt %d running for %v (a hung bus?)",
			a.openFails+1, time.Since(a.opening).Round(100*time.Millisecond))
		if a.openErr != nil {
			h.LastError += fmt.Sprintf("; the last one failed: %v", a.openErr)
		}
	case a.openErr != nil:
		h.LastError = fmt.Sprintf("opening the sensor (%d attempts failed; next in %v): %v",
			a.openFails, max(0, time.Until(a.openNext)).Round(100*time.Millisecond), a.openErr)
	}
	return h
}

// openFailures counts failed attempts to open the sensor.
func (a *Agent) openFailures() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.openFails
}

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }

func (a *Agent) setupUplink() error {
	cfg := a.cfg
	mc := uplink.Options{
		Broker: cfg.Broker, ClientID: cfg.DeviceID, Username: cfg.Username, Password: cfg.Password,
		CAFile: cfg.TLSCA, CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, ServerName: cfg.TLSServerName,
		StatusTopic: wire.StatusTopic(cfg.DeviceID), MaxReconnectInterval: cfg.ReconnectMax,
		Logger: a.log.With(slog.String("component", "mqtt")),
	}
	a.topic = func(*spool.Record) string { return wire.TelemetryTopic(cfg.DeviceID) }
	ackMode, err := uplink.ParseAckMode(cfg.AckMode)
	if err != nil {
		return err
	}
	if ackMode != uplink.AckPuback {
		mc.AckTopic = wire.AckTopic(cfg.DeviceID)
		mc.OnAck = func(p []byte) { a.fwd.HandleAck(p) }
	}
	if cfg.IoTHub != "" {
		cs, err := iothub.ParseConnectionString(cfg.IoTHub)
		if err != nil {
			return err
		}
		// IoT Hub: TLS on 8883, its username, a SAS token renewed before expiry,
		// no retained status topic (IoT Hub has no such thing).
		if !strings.HasPrefix(cfg.Broker, "ssl://") && !strings.HasPrefix(cfg.Broker, "tls://") && !strings.HasPrefix(cfg.Broker, "mqtts://") {
			mc.Broker = fmt.Sprintf("ssl://%s:%d", cs.HostName, iothub.Port)
		}
		if mc.ServerName == "" {
			mc.ServerName = cs.HostName
		}
		ttl := cfg.IoTHubTTL
		mc.Credentials = func() (string, string) {
			return cs.Username(), cs.Token(time.Now().Add(ttl))
		}
		mc.Username, mc.Password = "", ""
		mc.RenewEvery = ttl * 8 / 10
		mc.StatusTopic = ""
		// IoT Hub keeps what it acknowledged (and routes it to storage);
		// it has no ack topic to subscribe to.
		ackMode, mc.AckTopic, mc.OnAck = uplink.AckPuback, "", nil
		a.topic = func(rec *spool.Record) string { return iothub.Topic(cs.DeviceID, encodingOf(rec.Data, a.enc)) }
		a.log.Info("sending to Azure IoT Hub", "hub", cs.HostName, "device", cs.DeviceID, "address", mc.Broker, "token_ttl", ttl)
	}
	conn, err := uplink.NewMQTT(mc)
	if err != nil {
		return err
	}
	a.conn = conn
	a.fwd, err = uplink.NewForwarder(uplink.ForwarderConfig{
		Spool: a.spool, Pub: conn, Topic: a.topic,
		MaxInflight: cfg.MaxInflight, BacklogRate: cfg.BacklogRate,
		AckMode: ackMode, LandingTimeout: cfg.LandingTimeout, MaxUnlanded: cfg.MaxUnlanded,
		OnAck:  a.onAck,
		Logger: a.log.With(slog.String("component", "forwarder")),
	})
	return err
}

// encodingOf tells a spooled batch's encoding from its first bytes (a spool
// may hold batches from a run with another --encoding); def when they say
// nothing the wire format knows (the spool's CRC makes that unlikely).
func encodingOf(data []byte, def wire.Encoding) wire.Encoding {
	enc, err := wire.DetectEncoding(data)
	if err != nil {
		return def
	}
	return enc
}

func (a *Agent) onAck(rec *spool.Record) {
	if rec.Boot != a.boot {
		return // backlog of an earlier run: counted by the forwarder only
	}
	a.mu.Lock()
	a.ackedSeqs = append(a.ackedSeqs, rec.Seq)
	a.readingsAcked += int64(rec.Readings)
	a.mu.Unlock()
}

func (a *Agent) closeLocal() {
	if a.spool != nil {
		if err := a.spool.Close(); err != nil {
			a.log.Warn("closing the spool", "err", err)
		}
	}
	a.mu.Lock()
	sensor := a.sensor
	a.mu.Unlock()
	if sensor != nil {
		_ = sensor.Close()
	}
}

// writer encodes each batch and appends it to the spool (one append each).
func (a *Agent) writer(smp *sample.Sampler) {
	e := wire.NewEncoder(a.enc)
	var buf []byte
	for b := range smp.Batches() {
		n := len(b.Readings)
		var err error
		buf, err = e.Append(buf[:0], b)
		switch {
		case err != nil:
			a.mu.Lock()
			a.encodeErrors += int64(n) // readings, like every dropped count
			a.mu.Unlock()
			a.log.Error("encoding a batch; dropping it", "seq", b.Seq, "readings", n, "err", err)
		case a.cfg.IoTHub != "" && len(buf) > iothub.MaxMessageBytes:
			a.mu.Lock()
			a.oversizeDrops += int64(n)
			a.mu.Unlock()
			a.log.Error("encoded batch is over IoT Hub's 256 KB limit; dropping it (shorten --batch-interval)", "seq", b.Seq, "bytes", len(buf))
		default:
			if _, err := a.spool.Append(b.BootID, b.Seq, n, buf); err != nil {
				a.mu.Lock()
				a.spoolErrors += int64(n)
				a.mu.Unlock()
				a.log.Error("appending a batch to the spool; dropping it", "seq", b.Seq, "readings", n, "err", err)
			}
		}
		smp.Release(b)
	}
}

// Run runs until ctx ends, then shuts down in order: stop sampling, flush
// the partial batch to the spool, wait (up to ShutdownTimeout) for the
// broker to acknowledge what is outstanding, close.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("agent starting", "device", a.cfg.DeviceID, "boot", fmt.Sprintf("%016x", a.boot),
		"rate_hz", a.cfg.Rate, "batch_interval", a.cfg.BatchEvery, "encoding", a.enc.String(),
		"broker", a.cfg.Broker, "spool", a.cfg.SpoolDir)
	sendCtx, stopSend := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSend()
	a.conn.Start(sendCtx)
	fwdDone := make(chan error, 1)
	go func() { fwdDone <- a.fwd.Run(sendCtx) }()

	stopMetrics := a.serveMetrics()

	sampleDone := make(chan error, 1)
	go func() { sampleDone <- a.sample(ctx) }()
	var sampleErr error
	select {
	case <-ctx.Done(): // SIGINT/SIGTERM
		stuck := time.NewTimer(a.cfg.ReadTimeout + 2*time.Second)
		select {
		case sampleErr = <-sampleDone:
			stuck.Stop()
			a.log.Info("sampling stopped; waiting for outstanding acknowledgements", "timeout", a.cfg.ShutdownTimeout, "sensor_opened", a.sampler.Load() != nil)
		case <-stuck.C:
			// A read blocked on a stuck bus cannot be interrupted: leave it.
			a.log.Error("sampling did not stop: a sensor read is stuck; the batch being collected is lost")
		}
	case sampleErr = <-sampleDone:
		if sampleErr != nil { // the wrong device appeared where the sensor was awaited
			a.log.Warn("cannot sample; sending what is spooled, then stopping", "timeout", a.cfg.ShutdownTimeout)
		}
	}

	var fwdErr error
	drainCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	select {
	case fwdErr = <-fwdDone: // the forwarder failed earlier
	default:
		if err := a.fwd.Drain(drainCtx); err != nil {
			a.log.Warn("shutdown", "err", err)
		}
	}
	cancel()
	// Close before cancelling the connection's context: Close says "offline"
	// on the status topic, which a graceful disconnect does not (the will is
	// only for connections that die).
	a.conn.Close(500 * time.Millisecond)
	stopSend()
	if fwdErr == nil {
		fwdErr = <-fwdDone
	}
	stopMetrics()
	a.closeLocal()
	if err := a.writeSummary(); err != nil {
		a.log.Error("writing the summary file", "err", err)
	}
	st, ss, fc := a.samplerStats(), a.spool.Stats(), a.fwd.Counters()
	a.log.Info("agent stopped", "readings", st.Readings, "missed_ticks", st.MissedTicks, "not_ready", st.NotReady,
		"read_errors", st.ReadErrors, "batches", st.Batches, "acked_batches", fc.Acked,
		"spool_batches_left", ss.Records, "dropped_readings", a.summaryDropped())
	return errors.Join(sampleErr, fwdErr)
}

// sample opens the sensor if it did not answer at start (retrying until it
// does), then runs the sampler and the writer until ctx ends. It returns
// when the partial batch is in the spool, or with the error that makes
// sampling impossible (the wrong device appeared).
func (a *Agent) sample(ctx context.Context) error {
	if a.sampler.Load() == nil {
		if err := a.openLoop(ctx); err != nil {
			if ctx.Err() != nil {
				return nil // stopped before the sensor appeared
			}
			return err
		}
	}
	smp := a.sampler.Load()
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); a.writer(smp) }()
	err := smp.Run(ctx)
	<-writerDone // the partial batch is in the spool
	return err
}

// Summary is the JSON written to --summary-file on exit.
type Summary struct {
	Device          string      `json:"device"`
	Boot            string      `json:"boot"`
	ReadingsSampled int64       `json:"readings_sampled"`
	ReadingsAcked   int64       `json:"readings_acked"`
	BatchesAcked    int64       `json:"batches_acked"`
	Acked           [][2]uint64 `json:"acked"`
	DroppedReadings int64       `json:"dropped_readings"`
	LatenessP50US   float64     `json:"lateness_p50_us"`
	LatenessP99US   float64     `json:"lateness_p99_us"`
	MaxRSSKiB       int64       `json:"max_rss_kib"`
}

// summary returns the run's figures: readings_acked counts the readings of
// this boot's batches the broker acknowledged (PUBACK).
func (a *Agent) summary() Summary {
	a.mu.Lock()
	seqs := slices.Clone(a.ackedSeqs)
	acked := a.readingsAcked
	dropped := a.encodeErrors + a.oversizeDrops + a.spoolErrors
	a.mu.Unlock()
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	ranges := [][2]uint64{}
	for _, s := range seqs {
		if n := len(ranges); n > 0 && ranges[n-1][1]+1 == s {
			ranges[n-1][1] = s
		} else {
			ranges = append(ranges, [2]uint64{s, s})
		}
	}
	st := a.samplerStats()
	return Summary{
		Device: a.cfg.DeviceID, Boot: fmt.Sprintf("%016x", a.boot),
		ReadingsSampled: st.Readings, ReadingsAcked: acked, BatchesAcked: int64(len(seqs)), Acked: ranges,
		DroppedReadings: dropped + st.DroppedRdg + a.spool.Stats().DroppedReadings,
		LatenessP50US:   a.lateness().Quantile(0.5),
		LatenessP99US:   a.lateness().Quantile(0.99),
		MaxRSSKiB:       maxRSSKiB(),
	}
}

func (a *Agent) writeSummary() error {
	if a.cfg.SummaryFile == "" {
		return nil
	}
	data, err := json.MarshalIndent(a.summary(), "", "  ")
	if err != nil {
		return err
	}
	tmp := a.cfg.SummaryFile + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, a.cfg.SummaryFile)
}
