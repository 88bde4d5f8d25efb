package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"runtime"
	rtmetrics "runtime/metrics"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pilake/pilake/agent/clock"
)

// registry builds the agent's private Prometheus registry. Counters and
// gauges are CounterFunc/GaugeFunc read from the components' own counters
// when scraped, so sampling pays nothing for them; the lateness histogram
// (a.lateHist) is a real prometheus.Histogram the sampler observes into,
// allocation-free. Every metric carries the constant label device.
func (a *Agent) registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"device": a.cfg.DeviceID}
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pilake_agent_" + name, Help: help, ConstLabels: labels}, f))
	}
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pilake_agent_" + name, Help: help, ConstLabels: labels}, f))
	}
	s := a.samplerStats
	counter("ticks_total", "Sampling ticks (polls due).", func() float64 { return float64(s().Ticks) })
	counter("missed_ticks_total", "Ticks skipped because sampling ran more than one interval late.", func() float64 { return float64(s().MissedTicks) })
	counter("readings_total", "Readings taken and put into batches.", func() float64 { return float64(s().Readings) })
	counter("fresh_readings_total", "Readings with a new conversion (any value changed).", func() float64 { return float64(s().Fresh) })
	gauge("fresh_ratio", "Fresh readings / readings since start.", func() float64 {
		st := s()
		if st.Readings == 0 {
			return 0
		}
		return float64(st.Fresh) / float64(st.Readings)
	})
	counter("sensor_read_errors_total", "Failed sensor reads.", func() float64 { return float64(s().ReadErrors) })
	counter("sensor_read_timeouts_total", "Sensor reads that exceeded the read timeout (stuck bus).", func() float64 { return float64(s().Timeouts) })
	counter("sensor_reinits_total", "Sensor re-initialisations (reset, errors, frozen).", func() float64 { return float64(s().Reinits) })
	counter("sensor_open_failures_total", "Failed attempts to open the sensor at start (retried with backoff).", func() float64 { return float64(a.openFailures()) })
	gauge("sensor_healthy", "1 when the sensor reads fine and its values change.", func() float64 { return b2f(a.sensorHealth().OK) })
	gauge("lateness_p50_seconds", "Median tick lateness since start.", func() float64 { return a.lateness().Quantile(0.5) / 1e6 })
	gauge("lateness_p99_seconds", "99th percentile tick lateness since start.", func() float64 { return a.lateness().Quantile(0.99) / 1e6 })
	reg.MustRegister(a.lateHist)
	counter("batches_total", "Batches made.", func() float64 { return float64(s().Batches) })
	counter("batches_published_total", "Batch publications (including resends).", func() float64 { return float64(a.fwd.Counters().Published) })
	counter("batches_acked_total", "Batches acknowledged (landing ack, or PUBACK when it means landed) and removed from the spool.", func() float64 { return float64(a.fwd.Counters().Acked) })
	counter("readings_acked_total", "Readings in acknowledged batches.", func() float64 { return float64(a.fwd.Counters().AckedReadings) })
	counter("publish_failures_total", "Publications that failed and will be retried.", func() float64 { return float64(a.fwd.Counters().Failed) })
	counter("backlog_batches_sent_total", "Backlog (not live) batch publications.", func() float64 { return float64(a.fwd.Counters().BacklogSent) })
	counter("batches_resent_total", "Batches sent again because no landing ack came within --landing-timeout.", func() float64 { return float64(a.fwd.Counters().Resent) })
	gauge("unlanded_batches", "Batches published and not yet acknowledged as landed (in flight or PUBACKed).", func() float64 { return float64(a.fwd.Counters().Unlanded) })
	gauge("puback_means_landed", "1 when a PUBACK removes a batch from the spool (ack-mode puback, or auto and the broker said so).", func() float64 { return b2f(a.fwd.Counters().PubackMeansLanded) })
	counter("bad_acks_total", "Malformed messages on the landing ack topic (ignored).", func() float64 { return float64(a.fwd.Counters().BadAcks) })
	counter("mqtt_short_connections_total", "Connections that ended within 10 s and were followed by a reconnect backoff.", func() float64 { return float64(a.conn.ShortLived()) })
	gauge("inflight_batches", "Batches published and not yet acknowledged.", func() float64 { return float64(a.fwd.Counters().Inflight) })
	gauge("spool_bytes", "Bytes in the spool's segment files.", func() float64 { return float64(a.spool.Stats().Bytes) })
	gauge("spool_batches", "Unacknowledged batches in the spool.", func() float64 { return float64(a.spool.Stats().Records) })
	gauge("spool_readings", "Readings in unacknowledged spooled batches.", func() float64 { return float64(a.spool.Stats().Readings) })
	counter("dropped_readings_total", "Readings dropped: spool over its cap, consumer stalled, encode errors.", func() float64 {
		return float64(a.summaryDropped())
	})
	gauge("mqtt_connected", "1 while connected to the broker.", func() float64 { return b2f(a.conn.Connected()) })
	counter("mqtt_reconnects_total", "Reconnections after the first connection.", func() float64 { return float64(a.conn.Reconnects()) })
	gauge("clock_synced", "1 when the kernel says the wall clock is NTP-synchronised.", func() float64 { return b2f(clock.Synced()) })
	gauge("max_rss_bytes", "Peak resident set size of the process.", func() float64 { return float64(maxRSSKiB()) * 1024 })
	gauge("goroutines", "Goroutines of the process.", func() float64 { return float64(runtime.NumGoroutine()) })
	gauge("heap_bytes", "Bytes of live and not yet swept heap objects.", heapBytes)
	return reg
}

// latencyBounds are the lateness histogram's bucket bounds, in µs.
var latencyBounds = []float64{10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000}

// newLatenessHistogram is the tick lateness histogram, in seconds.
func newLatenessHistogram(device string) prometheus.Histogram {
	buckets := make([]float64, len(latencyBounds))
	for i, us := range latencyBounds {
		buckets[i] = us / 1e6
	}
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "pilake_agent_lateness_seconds", Help: "How late sampling ticks started (histogram since start).",
		ConstLabels: prometheus.Labels{"device": device}, Buckets: buckets,
	})
}

func heapBytes() float64 {
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindUint64 {
		return 0
	}
	return float64(s[0].Value.Uint64())
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (a *Agent) summaryDropped() int64 {
	a.mu.Lock()
	d := a.encodeErrors + a.oversizeDrops + a.spoolErrors
	a.mu.Unlock()
	return d + a.samplerStats().DroppedRdg + a.spool.Stats().DroppedReadings
}

// healthz reports 200 when the sensor is healthy (the broker may be down:
// the spool covers that, and the body says so) and 503 otherwise.
func (a *Agent) healthz(w http.ResponseWriter, _ *http.Request) {
	h := a.sensorHealth()
	ss := a.spool.Stats()
	status := "ok"
	code := http.StatusOK
	switch {
	case !h.OK:
		status, code = "unhealthy", http.StatusServiceUnavailable
	case !a.conn.Connected():
		status = "degraded"
	}
	body := map[string]any{
		"status":         status,
		"device":         a.cfg.DeviceID,
		"sensor":         h,
		"mqtt_connected": a.conn.Connected(),
		"spool_batches":  ss.Records,
		"spool_bytes":    ss.Bytes,
		"dropped":        a.summaryDropped(),
		"clock_synced":   clock.Synced(),
	}
	if !h.OK {
		body["why"] = "sensor " + h.State + ": " + h.LastError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

// serveMetrics starts /metrics and /healthz on MetricsAddr. A port already
// in use is logged, not fatal: sampling matters more than its metrics.
func (a *Agent) serveMetrics() (stop func()) {
	if a.cfg.MetricsAddr == "" {
		return func() {}
	}
	ln, err := net.Listen("tcp", a.cfg.MetricsAddr)
	if err != nil {
		a.log.Warn("metrics endpoint disabled: cannot listen", "addr", a.cfg.MetricsAddr, "err", err)
		return func() {}
	}
	mux := http.NewServeMux()
	reg := a.registry()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn), ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", a.healthz)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	a.log.Info("metrics and health endpoint", "url", "http://"+ln.Addr().String()+"/metrics")
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Warn("metrics server stopped", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}
