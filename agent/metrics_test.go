package main

import (
	"math"
	"net/http"
	"path/filepath"
	"slices"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestMetricsParseWithPrometheus scrapes a running agent's /metrics and
// reads it with Prometheus' own text parser: every metric is there with its
// type and the device label, and the lateness histogram has its buckets.
func TestMetricsParseWithPrometheus(t *testing.T) {
	metrics := freeAddr(t)
	ra := startAgent(t, "--simulate", "--device-id", "pi-metrics", "--broker", "tcp://"+freeAddr(t),
		"--spool-dir", filepath.Join(t.TempDir(), "spool"), "--metrics-addr", metrics, "--shutdown-timeout", "100ms")
	waitHealth(t, ra, metrics, "sampling", func(h healthBody) bool { return h.Sensor.State == "ok" })

	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); expfmt.ResponseFormat(resp.Header).FormatType() != expfmt.TypeTextPlain {
		t.Fatalf("content type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("Prometheus cannot parse /metrics: %v", err)
	}
	c, g, h := dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_HISTOGRAM
	want := map[string]dto.MetricType{
		"ticks_total": c, "missed_ticks_total": c, "readings_total": c, "fresh_readings_total": c, "fresh_ratio": g,
		"sensor_read_errors_total": c, "sensor_read_timeouts_total": c, "sensor_reinits_total": c,
		"sensor_open_failures_total": c, "sensor_healthy": g,
		"lateness_p50_seconds": g, "lateness_p99_seconds": g, "lateness_seconds": h,
		"batches_total": c, "batches_published_total": c, "batches_acked_total": c, "readings_acked_total": c,
		"publish_failures_total": c, "backlog_batches_sent_total": c, "inflight_batches": g,
		"batches_resent_total": c, "unlanded_batches": g, "puback_means_landed": g, "bad_acks_total": c,
		"mqtt_short_connections_total": c,
		"spool_bytes":                  g, "spool_batches": g, "spool_readings": g, "dropped_readings_total": c,
		"mqtt_connected": g, "mqtt_reconnects_total": c, "clock_synced": g,
		"max_rss_bytes": g, "goroutines": g, "heap_bytes": g,
	}
	for short, typ := range want {
		name := "pilake_agent_" + short
		f, ok := fams[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if f.GetType() != typ || f.GetHelp() == "" || len(f.GetMetric()) != 1 {
			t.Errorf("%s: type %v, help %q, %d series", name, f.GetType(), f.GetHelp(), len(f.GetMetric()))
			continue
		}
		if l := f.GetMetric()[0].GetLabel(); len(l) != 1 || l[0].GetName() != "device" || l[0].GetValue() != "pi-metrics" {
			t.Errorf("%s labels %v", name, l)
		}
	}
	if len(fams) != len(want) {
		t.Errorf("%d families, want %d", len(fams), len(want))
	}
	hist := fams["pilake_agent_lateness_seconds"].GetMetric()[0].GetHistogram()
	var bounds []float64
	for _, b := range hist.GetBucket() {
		if !math.IsInf(b.GetUpperBound(), 1) { // the parser adds le="+Inf"
			bounds = append(bounds, b.GetUpperBound()*1e6)
		}
	}
	for i := range bounds {
		bounds[i] = float64(int64(bounds[i] + 0.5)) // µs, float rounding
	}
	if !slices.Equal(bounds, latencyBounds) || hist.GetSampleCount() == 0 {
		t.Errorf("lateness histogram: bounds %v µs, %d observations", bounds, hist.GetSampleCount())
	}
	if r := fams["pilake_agent_readings_total"].GetMetric()[0].GetCounter().GetValue(); r == 0 {
		t.Errorf("readings_total is 0 while sampling")
	}
}

// TestLatenessHistogramDoesNotAllocate: the sampler observes every tick's
// lateness (400 Hz) into the Prometheus histogram.
func TestLatenessHistogramDoesNotAllocate(t *testing.T) {
	h := newLatenessHistogram("pi-01")
	if n := testing.AllocsPerRun(1000, func() { h.Observe(0.00012) }); n != 0 {
		t.Fatalf("Observe allocates %v times", n)
	}
}
