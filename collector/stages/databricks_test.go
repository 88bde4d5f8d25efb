package stages_test

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/stages"
)

// TestDatabricksScriptsMatchDefaults keeps scripts/databricks (which cannot
// run here) on the same window, lateness and moving-average lengths as the
// collector's defaults.
func TestDatabricksScriptsMatchDefaults(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile("../../scripts/databricks/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	sql := read("silver_gold.sql")
	py := read("pilake_fold.py") // the per-device fold's constants (pipeline_per_device_watermark.py is its Spark edge)
	window, lateness := stages.DefaultWindow, stages.DefaultAllowedLateness
	if window != time.Second || lateness != 10*time.Second ||
		!strings.Contains(sql, "window(ts, '1 second')") || !strings.Contains(sql, "max(ts) - INTERVAL 10 SECONDS") {
		t.Error("silver_gold.sql: window or watermark differ from 1 s / 10 s")
	}
	for _, n := range stages.DefaultMovingAverages {
		if !strings.Contains(sql, strconv.Itoa(n)+" AS n") || !strings.Contains(sql, "ROWS BETWEEN "+strconv.Itoa(n-1)+" PRECEDING AND CURRENT ROW") {
			t.Errorf("silver_gold.sql: no moving average over %d windows", n)
		}
	}
	num := func(name string) int64 {
		m := regexp.MustCompile(`(?m)^` + name + ` = ([0-9_]+)`).FindStringSubmatch(py)
		if m == nil {
			t.Fatalf("pilake_fold.py: no %s", name)
		}
		v, _ := strconv.ParseInt(strings.ReplaceAll(m[1], "_", ""), 10, 64)
		return v
	}
	if num("WINDOW_US") != window.Microseconds() || num("LATENESS_US") != lateness.Microseconds() {
		t.Error("pilake_fold.py: window or lateness differ")
	}
	if !strings.Contains(py, "MOVING_AVERAGES = [8, 15, 60]") {
		t.Error("pilake_fold.py: moving averages differ")
	}
}
