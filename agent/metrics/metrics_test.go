package metrics

import (
	"math"
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestParsesWithPrometheus writes every kind of metric and reads it back
// with Prometheus' own text-format parser.
func TestParsesWithPrometheus(t *testing.T) {
	s := New(map[string]string{"device": `pi "01"\n`, "app": "agent"})
	s.Counter("x_total", "A counter.\nSecond line with a \\.", func() float64 { return 42 })
	s.Gauge("y_ratio", "A gauge.", func() float64 { return 0.25 })
	s.Gauge("z_inf", "Infinite.", func() float64 { return math.Inf(1) })
	s.Histogram("lat_seconds", "A histogram.", func() Histogram {
		return Histogram{Bounds: []float64{1e-4, 1e-3}, Counts: []uint64{3, 5}, Count: 6, Sum: 0.5}
	})
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("content type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("Prometheus cannot parse the output: %v\n%s", err, rec.Body.String())
	}
	labels := func(m *dto.Metric) map[string]string {
		out := map[string]string{}
		for _, l := range m.GetLabel() {
			out[l.GetName()] = l.GetValue()
		}
		return out
	}
	c := fams["x_total"]
	if c.GetType() != dto.MetricType_COUNTER || c.GetMetric()[0].GetCounter().GetValue() != 42 || c.GetHelp() != "A counter.\nSecond line with a \\." {
		t.Fatalf("counter parsed as %v", c)
	}
	if l := labels(c.GetMetric()[0]); l["device"] != `pi "01"\n` || l["app"] != "agent" {
		t.Fatalf("labels parsed as %v", l)
	}
	if g := fams["y_ratio"].GetMetric()[0].GetGauge().GetValue(); g != 0.25 {
		t.Fatalf("gauge %v", g)
	}
	if g := fams["z_inf"].GetMetric()[0].GetGauge().GetValue(); !math.IsInf(g, 1) {
		t.Fatalf("infinite gauge %v", g)
	}
	h := fams["lat_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 6 || h.GetSampleSum() != 0.5 || len(h.GetBucket()) < 2 ||
		h.GetBucket()[0].GetUpperBound() != 1e-4 || h.GetBucket()[0].GetCumulativeCount() != 3 ||
		h.GetBucket()[1].GetCumulativeCount() != 5 {
		t.Fatalf("histogram parsed as %v", h)
	}
	n, err := s.WriteTo(new(strings.Builder))
	if err != nil || n != int64(rec.Body.Len()) {
		t.Fatalf("WriteTo = %d, %v; served %d bytes", n, err, rec.Body.Len())
	}
}
