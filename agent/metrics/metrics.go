package metrics

import (
	"bufio"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Histogram is a histogram read at scrape time: Counts[i] is the number of
// observations ≤ Bounds[i] (cumulative), Count and Sum over all of them.
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    float64
}

type kind uint8

const (
	counter kind = iota
	gauge
	histogram
)

type metric struct {
	name, help string
	kind       kind
	value      func() float64
	hist       func() Histogram
}

// Set is a set of metrics with the same constant labels. Register all
// metrics before serving; a Set is then safe for concurrent scrapes.
type Set struct {
	labels  string // `device="pi-01"`, sorted by name, escaped
	metrics []metric
}

// New returns a Set whose metrics all carry labels.
func New(labels map[string]string) *Set {
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	for i, k := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteString(`="`)
		b.WriteString(escapeLabel(labels[k]))
		b.WriteByte('"')
	}
	return &Set{labels: b.String()}
}

// Counter registers a counter (a total that only grows).
func (s *Set) Counter(name, help string, f func() float64) {
	s.metrics = append(s.metrics, metric{name: name, help: help, kind: counter, value: f})
}

// Gauge registers a gauge.
func (s *Set) Gauge(name, help string, f func() float64) {
	s.metrics = append(s.metrics, metric{name: name, help: help, kind: gauge, value: f})
}

// Histogram registers a histogram.
func (s *Set) Histogram(name, help string, f func() Histogram) {
	s.metrics = append(s.metrics, metric{name: name, help: help, kind: histogram, hist: f})
}

var typeNames = [...]string{counter: "counter", gauge: "gauge", histogram: "histogram"}

// WriteTo writes every metric in the text exposition format.
func (s *Set) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	b := bufio.NewWriter(cw)
	for _, m := range s.metrics {
		b.WriteString("# HELP " + m.name + " " + escapeHelp(m.help) + "\n")
		b.WriteString("# TYPE " + m.name + " " + typeNames[m.kind] + "\n")
		if m.kind != histogram {
			s.sample(b, m.name, "", m.value())
			continue
		}
		h := m.hist()
		for i, le := range h.Bounds {
			var c uint64
			if i < len(h.Counts) {
				c = h.Counts[i]
			}
			s.sample(b, m.name+"_bucket", `le="`+formatFloat(le)+`"`, float64(c))
		}
		s.sample(b, m.name+"_bucket", `le="+Inf"`, float64(h.Count))
		s.sample(b, m.name+"_sum", "", h.Sum)
		s.sample(b, m.name+"_count", "", float64(h.Count))
	}
	err := b.Flush()
	return cw.n, err
}

func (s *Set) sample(b *bufio.Writer, name, extra string, v float64) {
	b.WriteString(name)
	if s.labels != "" || extra != "" {
		b.WriteByte('{')
		b.WriteString(s.labels)
		if s.labels != "" && extra != "" {
			b.WriteByte(',')
		}
		b.WriteString(extra)
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(formatFloat(v))
	b.WriteByte('\n')
}

// ServeHTTP serves the metrics.
func (s *Set) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = s.WriteTo(w)
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
