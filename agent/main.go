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
	"syscall"
	"time"

	"github.com/pilake/pilake/agent/clock"
	"github.com/pilake/pilake/agent/iothub"
	"github.com/pilake/pilake/agent/sample"
	"github.com/pilake/pilake/agent/spool"
	"github.com/pilake/pilake/agent/uplink"
	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/hw"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.LookupEnv, os.Stderr))
}

// run is the whole program; it returns the exit status.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stderr io.Writer) int {
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
	a, err := newAgent(cfg, log)
	if err != nil {
		log.Error("starting", "err", err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		log.Error("agent stopped with an error", "err", err)
		return 1
	}
	return 0
}

func newLogger(cfg *Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() == slog.KindDuration { // "5s", not 5000000000
			return slog.String(a.Key, a.Value.Duration().String())
		}
		return a
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
	cfg     *Config
	log     *slog.Logger
	boot    uint64
	enc     wire.Encoding
	sensor  senseCloser
	fake    *hw.Fake // with --simulate
	sampler *sample.Sampler
	spool   *spool.Spool
	conn    *uplink.MQTT
	fwd     *uplink.Forwarder
	topic   func(rec *spool.Record) string

	mu            sync.Mutex
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

func newAgent(cfg *Config, log *slog.Logger) (*Agent, error) {
	a := &Agent{cfg: cfg, log: log, boot: randomBootID()}
	var err error
	if a.enc, err = cfg.WireEncoding(); err != nil {
		return nil, err
	}
	opts, err := cfg.SensorOpts()
	if err != nil {
		return nil, err
	}
	if cfg.Simulate {
		a.fake = hw.NewFake(hw.FakeConfig{Seed: hw.SeedFor(cfg.DeviceID), Addr: uint16(cfg.I2CAddr)})
		a.sensor, err = hw.NewSensor(a.fake, a.fake.Addr(), &opts, cfg.AllowBMP280)
	} else {
		a.sensor, err = hw.Open(hw.OpenConfig{Bus: cfg.I2CBus, Addr: uint16(cfg.I2CAddr), Opts: opts, AllowBMP280: cfg.AllowBMP280})
	}
	if err != nil {
		return nil, fmt.Errorf("opening the sensor: %w", err)
	}
	rate := a.sensor.Rate()
	log.Info("sensor ready", "sensor", a.sensor.String(), "simulated", cfg.Simulate,
		"oversampling_t_p_h", fmt.Sprintf("%d/%d/%d", cfg.OsrsT, cfg.OsrsP, cfg.OsrsH), "filter", cfg.Filter,
		"standby", rate.Standby, "measure_time", rate.Measure,
		"conversions_per_s_typical", round1(rate.Typical), "conversions_per_s_min", round1(rate.Min),
		"poll_hz", cfg.Rate, "expected_fresh_ratio", round1(min(1, rate.Typical/cfg.Rate)*100)/100)
	if cfg.Rate < rate.Min {
		log.Warn("polling slower than the sensor converts: some conversions are never read", "poll_hz", cfg.Rate, "conversions_per_s", round1(rate.Min))
	}
	policy, _ := spool.ParseFsyncPolicy(cfg.SpoolFsync)
	a.spool, err = spool.Open(spool.Options{
		Dir: cfg.SpoolDir, MaxBytes: int64(cfg.SpoolMax), Fsync: policy, FsyncInterval: cfg.SpoolFsyncInt,
		Logger: log.With(slog.String("component", "spool")),
	})
	if err != nil {
		_ = a.sensor.Close()
		return nil, fmt.Errorf("opening the spool: %w", err)
	}
	if st := a.spool.Stats(); st.Records > 0 {
		log.Info("spool holds a backlog from an earlier run", "dir", cfg.SpoolDir, "batches", st.Records, "readings", st.Readings, "bytes", st.Bytes)
	}
	a.sampler, err = sample.New(sample.Config{
		Sensor: a.sensor, DeviceID: cfg.DeviceID, BootID: a.boot,
		Rate: cfg.Rate, BatchInterval: cfg.BatchEvery, NoHumidity: !a.sensor.HasHumidity(),
		ReadTimeout: cfg.ReadTimeout, FrozenAfter: cfg.FrozenAfter, DriverSense: cfg.DriverSense,
		Settle:      rate.Measure + rate.Standby + 5*time.Millisecond,
		ClockSynced: clock.Synced, WallMinusMono: clock.WallMinusMonoUS,
		Logger: log.With(slog.String("component", "sampler")),
	})
	if err != nil {
		a.closeLocal()
		return nil, err
	}
	if err := a.setupUplink(); err != nil {
		a.closeLocal()
		return nil, err
	}
	return a, nil
}

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }

func (a *Agent) setupUplink() error {
	cfg := a.cfg
	mc := uplink.Config{
		Broker: cfg.Broker, ClientID: cfg.DeviceID, Username: cfg.Username, Password: cfg.Password,
		CAFile: cfg.TLSCA, CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, ServerName: cfg.TLSServerName,
		StatusTopic: wire.StatusTopic(cfg.DeviceID), MaxReconnectInterval: cfg.ReconnectMax,
		Logger: a.log.With(slog.String("component", "mqtt")),
	}
	a.topic = func(*spool.Record) string { return wire.TelemetryTopic(cfg.DeviceID) }
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
		OnAck:  a.onAck,
		Logger: a.log.With(slog.String("component", "forwarder")),
	})
	return err
}

// encodingOf tells a spooled batch's encoding from its first bytes (a spool
// may hold batches from a run with another --encoding).
func encodingOf(data []byte, def wire.Encoding) wire.Encoding {
	switch {
	case len(data) >= 2 && data[0] == wire.Version1:
		if data[1]&0x80 != 0 {
			return wire.BinaryZstd
		}
		return wire.Binary
	case len(data) > 0 && (data[0] == '[' || data[0] == '{'):
		return wire.JSON
	}
	return def
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
	if a.sensor != nil {
		_ = a.sensor.Close()
	}
}

// writer encodes each batch and appends it to the spool (one append each).
func (a *Agent) writer() {
	e := wire.NewEncoder(a.enc)
	var buf []byte
	for b := range a.sampler.Batches() {
		n := len(b.Readings)
		var err error
		buf, err = e.Append(buf[:0], b)
		switch {
		case err != nil:
			a.mu.Lock()
			a.encodeErrors++
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
				a.spoolErrors++
				a.mu.Unlock()
				a.log.Error("appending a batch to the spool; dropping it", "seq", b.Seq, "readings", n, "err", err)
			}
		}
		a.sampler.Release(b)
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

	writerDone := make(chan struct{})
	go func() { defer close(writerDone); a.writer() }()
	sampleDone := make(chan error, 1)
	go func() { sampleDone <- a.sampler.Run(ctx) }() // until SIGINT/SIGTERM
	<-ctx.Done()
	var sampleErr error
	stuck := time.NewTimer(a.cfg.ReadTimeout + 2*time.Second)
	select {
	case sampleErr = <-sampleDone:
		stuck.Stop()
		<-writerDone // the partial batch is in the spool
		a.log.Info("sampling stopped; waiting for outstanding acknowledgements", "timeout", a.cfg.ShutdownTimeout)
	case <-stuck.C:
		// A read blocked on a stuck bus cannot be interrupted: leave it.
		a.log.Error("sampling did not stop: a sensor read is stuck; the batch being collected is lost")
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
	st, ss, fc := a.sampler.Stats(), a.spool.Stats(), a.fwd.Counters()
	a.log.Info("agent stopped", "readings", st.Readings, "missed_ticks", st.MissedTicks, "not_ready", st.NotReady,
		"read_errors", st.ReadErrors, "batches", st.Batches, "acked_batches", fc.Acked,
		"spool_batches_left", ss.Records, "dropped_readings", ss.DroppedReadings+st.DroppedRdg)
	return errors.Join(sampleErr, fwdErr)
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
	st := a.sampler.Stats()
	return Summary{
		Device: a.cfg.DeviceID, Boot: fmt.Sprintf("%016x", a.boot),
		ReadingsSampled: st.Readings, ReadingsAcked: acked, BatchesAcked: int64(len(seqs)), Acked: ranges,
		DroppedReadings: dropped + st.DroppedRdg + a.spool.Stats().DroppedReadings,
		LatenessP50US:   a.sampler.Lateness().Quantile(0.5),
		LatenessP99US:   a.sampler.Lateness().Quantile(0.99),
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
