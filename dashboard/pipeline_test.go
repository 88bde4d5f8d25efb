package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/dashboard/history"
	"github.com/pilake/pilake/dashboard/web"
	"github.com/pilake/pilake/scripts/testenv"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// startProcess runs a built pilake program until the test ends (SIGTERM, then wait).
func startProcess(t *testing.T, dir, name string, args ...string) (stop func()) {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, name)
	if i := len(name) - 2; name[i] == '-' { // agent-a → agent
		bin = filepath.Join(dir, name[:i])
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Errorf("%s did not stop on SIGINT; log in %s", name, logf.Name())
			}
			logf.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestBrowserPipeline opens the page against the real pipeline: the collector
// (embedded broker, local lake) and two simulated agents, built from this
// tree (or taken from $PILAKE_BIN_DIR/{collector,agent}) and run as separate
// processes; the dashboard runs in-process.
func TestBrowserPipeline(t *testing.T) {
	if !web.HasChartLibrary() {
		if testenv.Required() {
			t.Fatal("the chart library is missing: run dashboard/web/build.sh before the tests")
		}
		t.Skip("the chart library is missing: run dashboard/web/build.sh")
	}
	testenv.Chromium(t) // fail or skip early, before building
	dir := t.TempDir()
	if bin := os.Getenv("PILAKE_BIN_DIR"); bin != "" {
		// Binaries built by the caller (scripts/test.sh) from this tree.
		for _, name := range []string{"collector", "agent"} {
			if err := os.Symlink(filepath.Join(bin, name), filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		build := exec.Command("go", "build", "-o", dir+string(os.PathSeparator),
			"github.com/pilake/pilake/collector", "github.com/pilake/pilake/agent")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building collector and agent: %v\n%s", err, out)
		}
	}
	lakeDir := filepath.Join(dir, "lake")
	mqttPort, metricsPort := freePort(t), freePort(t)
	broker := "tcp://127.0.0.1:" + mqttPort
	stopCollector := startProcess(t, dir, "collector", "--lake", lakeDir, "--listen", "127.0.0.1:"+mqttPort,
		"--metrics-addr", "127.0.0.1:"+metricsPort, "--allowed-lateness", "1s", "--commit-interval", "500ms", "--log-format", "json")
	waitHTTP(t, "http://127.0.0.1:"+metricsPort+"/readyz")
	var stopAgents []func()
	for _, dev := range []string{"pi-a", "pi-b"} {
		stopAgents = append(stopAgents, startProcess(t, dir, "agent-"+dev[len(dev)-1:], "--simulate", "--device-id", dev, "--broker", broker,
			"--spool-dir", filepath.Join(dir, "spool-"+dev), "--metrics-addr", "", "--log-format", "json"))
	}
	base := startDashboard(t, "--lake", lakeDir, "--broker", broker)

	ctx := browser(t)
	shots := screenshotDir(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"?range=1m")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "live points from both agents", `window.pilake.updates >= 10 &&
		document.querySelectorAll('.card.has-data').length === 2 &&
		[...document.querySelectorAll('.card')].every(c => c.querySelectorAll('canvas').length >= 3 && +c.dataset.points >= 4)`)
	// Pipeline to screen, as the page measured it (informational; the benchmark is scripts/bench-latency.sh).
	lat, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`window.pilake.lat`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d live points, capture-to-page latencies (ms): %v", len(lat), lat[:min(len(lat), 12)])

	// The history endpoint: lake rows plus the live points the lake has not committed yet.
	waitJS(t, ctx, "a few seconds of points", `document.querySelectorAll('.card.has-data').length === 2 &&
		[...document.querySelectorAll('.card')].every(c => +c.dataset.points >= 10)`)
	// Reload: history from the lake, then live again.
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "history and live after reload", `window.pilake.loads >= 1 && window.pilake.updates >= 4 &&
		document.querySelectorAll('.card.has-data').length === 2`)
	shoot(t, ctx, shots, "0-pipeline-two-agents.png")

	// The collector's own Delta tables, read by the dashboard's lake source:
	// stop the agents and the collector (which commits what it holds) first.
	for _, stop := range stopAgents {
		stop()
	}
	stopCollector()
	l, err := lake.NewLocal(lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	got, err := history.NewLake(l, 8).Series(context.Background(), history.Query{FromMS: now.Add(-10 * time.Minute).UnixMilli(), ToMS: now.UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Device != "pi-a" || got[1].Device != "pi-b" {
		t.Fatalf("lake history: %d series %+v", len(got), got)
	}
	for _, s := range got {
		if s.Silver.Len() < 5 || s.Gold.Len() < 5 {
			t.Errorf("%s: %d silver and %d gold points in the collector's lake, want several", s.Device, s.Silver.Len(), s.Gold.Len())
		}
		for i, v := range s.Silver.TempC {
			if v < -40 || v > 85 || s.Silver.HumidityRH[i] < 0 || s.Silver.HumidityRH[i] > 100 || s.Silver.PressurePa[i] < 30000 || s.Silver.PressurePa[i] > 110000 {
				t.Fatalf("%s: implausible silver point %d: %v °C %v %%RH %v Pa", s.Device, i, v, s.Silver.HumidityRH[i], s.Silver.PressurePa[i])
			}
		}
	}
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := http.Get(url)
		if err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond) // polling another process
	}
}
