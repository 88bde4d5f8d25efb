package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
)

// runFor is how long the agents sample. Override with PILAKE_E2E_SECONDS.
func runFor() time.Duration {
	if s := os.Getenv("PILAKE_E2E_SECONDS"); s != "" {
		if d, err := time.ParseDuration(s + "s"); err == nil {
			return d
		}
	}
	return 10 * time.Second
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("module root not found from %s: %v", dir, err)
	}
	return dir
}

func build(t *testing.T, root, out, pkg string) string {
	t.Helper()
	bin := filepath.Join(out, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, b)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a program under test, its output kept in a file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan error
}

func start(t *testing.T, dir, name, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// cleanEnv drops PILAKE_* variables so only the flags configure the programs.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PILAKE_") {
			env = append(env, kv)
		}
	}
	return env
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T, within time.Duration) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("%s exited with %v; log:\n%s", p.name, err, tail(p.log))
		}
	case <-time.After(within):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop within %v of SIGTERM; log:\n%s", p.name, within, tail(p.log))
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func waitPort(t *testing.T, p *proc, port int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-p.done:
			t.Fatalf("%s exited early (%v); log:\n%s", p.name, err, tail(p.log))
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("%s is not listening on %d; log:\n%s", p.name, port, tail(p.log))
}

// summary is what an agent writes to --summary-file on exit.
type summary struct {
	Device          string     `json:"device"`
	Boot            string     `json:"boot"` // hex
	ReadingsSampled int64      `json:"readings_sampled"`
	ReadingsAcked   int64      `json:"readings_acked"`
	BatchesAcked    int64      `json:"batches_acked"`
	Acked           [][2]int64 `json:"acked"`
	DroppedReadings int64      `json:"dropped_readings"`
}

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end test builds and runs three programs")
	}
	root := moduleRoot(t)
	dir := t.TempDir()
	agentBin := build(t, root, dir, "./agent")
	collectorBin := build(t, root, dir, "./collector")
	dashboardBin := build(t, root, dir, "./dashboard")

	lakeDir := filepath.Join(dir, "lake")
	mqttPort, httpPort := freePort(t), freePort(t)
	broker := fmt.Sprintf("tcp://127.0.0.1:%d", mqttPort)

	collector := start(t, dir, "collector", collectorBin, "--lake", lakeDir,
		"--listen", fmt.Sprintf("127.0.0.1:%d", mqttPort), "--metrics-addr", "")
	waitPort(t, collector, mqttPort)

	devices := []string{"e2e-alpha", "e2e-beta"}
	var agents []*proc
	for _, d := range devices {
		agents = append(agents, start(t, dir, "agent-"+d, agentBin, "--simulate", "--device-id", d,
			"--broker", broker, "--spool-dir", filepath.Join(dir, "spool-"+d),
			"--summary-file", filepath.Join(dir, d+".summary.json"), "--metrics-addr", ""))
	}
	dashboard := start(t, dir, "dashboard", dashboardBin, "--lake", lakeDir, "--broker", broker,
		"--listen", fmt.Sprintf("127.0.0.1:%d", httpPort))
	waitPort(t, dashboard, httpPort)

	select {
	case <-time.After(runFor()):
	case err := <-collector.done:
		t.Fatalf("collector exited during the run (%v); log:\n%s", err, tail(collector.log))
	}
	for _, a := range agents {
		a.stop(t, 30*time.Second)
	}
	collector.stop(t, 60*time.Second)
	t.Logf("logs and lake are in %s", dir)

	ctx := context.Background()
	l, err := lake.NewLocal(lakeDir)
	if err != nil {
		t.Fatal(err)
	}

	// Every batch an agent saw acknowledged is in landing/ (in a segment).
	all, err := landing.ReadLanded(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	landed, segs := map[string]bool{}, map[string]bool{}
	for _, lb := range all {
		if lb.SegmentRecords == 0 {
			t.Errorf("landing/ holds %s, not a segment", lb.Name)
		}
		landed[lb.Batch.Key()] = true
		segs[lb.Name] = true
	}
	var sent int64
	for _, d := range devices {
		var s summary
		b, err := os.ReadFile(filepath.Join(dir, d+".summary.json"))
		if err != nil {
			t.Fatalf("agent %s left no summary: %v", d, err)
		}
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatalf("agent %s summary: %v\n%s", d, err, b)
		}
		t.Logf("agent %s: sampled %d readings, %d acknowledged in %d batches, %d dropped",
			d, s.ReadingsSampled, s.ReadingsAcked, s.BatchesAcked, s.DroppedReadings)
		if s.BatchesAcked < int64(runFor()/time.Second)/2 || s.ReadingsAcked == 0 {
			t.Errorf("agent %s: only %d batches acknowledged in %v", d, s.BatchesAcked, runFor())
		}
		if s.ReadingsAcked != s.ReadingsSampled || s.DroppedReadings != 0 {
			t.Errorf("agent %s: %d readings sampled but %d acknowledged (%d dropped) after a clean stop",
				d, s.ReadingsSampled, s.ReadingsAcked, s.DroppedReadings)
		}
		boot, err := strconv.ParseUint(s.Boot, 16, 64)
		if err != nil {
			t.Fatalf("agent %s summary: boot %q: %v", d, s.Boot, err)
		}
		var n int64
		for _, r := range s.Acked {
			for seq := r[0]; seq <= r[1]; seq++ {
				n++
				key := (&wire.Batch{DeviceID: d, BootID: boot, Seq: uint64(seq)}).Key()
				if !landed[key] {
					t.Errorf("acknowledged batch %s is not in landing/", key)
				}
			}
		}
		if n != s.BatchesAcked {
			t.Errorf("agent %s: acked ranges hold %d batches, summary says %d", d, n, s.BatchesAcked)
		}
		sent += s.ReadingsAcked
	}
	if len(landed) < 2 {
		t.Fatalf("landing/ holds %d batches", len(landed))
	}

	// Bronze has a row per reading sent, each once.
	bronze, err := delta.ReadTable[schema.BronzeRow](ctx, l, schema.Bronze, nil)
	if err != nil {
		t.Fatalf("reading bronze: %v", err)
	}
	if int64(len(bronze)) != sent {
		t.Errorf("bronze has %d rows, agents sent %d readings", len(bronze), sent)
	}
	type key struct {
		dev       string
		boot, seq int64
		ts        int64
	}
	seen := make(map[key]int, len(bronze))
	for _, r := range bronze {
		seen[key{r.Device, r.Boot, r.Seq, r.TS}]++
	}
	dups := 0
	for _, c := range seen {
		if c > 1 {
			dups += c - 1
		}
	}
	// Several polls may share a timestamp only if the clock did not advance; allow none.
	if dups > 0 {
		t.Errorf("bronze holds %d duplicate (device, boot, seq, ts) rows", dups)
	}

	// Silver windows count every bronze reading exactly once.
	silver, err := delta.ReadTable[schema.SilverRow](ctx, l, schema.Silver, nil)
	if err != nil {
		t.Fatalf("reading silver: %v", err)
	}
	var silverCount int64
	perDevice := map[string]int{}
	for _, r := range silver {
		silverCount += r.Count
		perDevice[r.Device]++
	}
	late, _ := delta.ReadTable[schema.SilverLateRow](ctx, l, schema.SilverLate, nil)
	if silverCount+int64(len(late)) != int64(len(bronze)) {
		t.Errorf("silver windows count %d readings (+%d late), bronze has %d", silverCount, len(late), len(bronze))
	}
	if len(late) != 0 {
		t.Errorf("%d readings went to silver_late in an uninterrupted run", len(late))
	}
	for _, d := range devices {
		if perDevice[d] < int(runFor()/time.Second)/2 {
			t.Errorf("silver has %d windows for %s", perDevice[d], d)
		}
	}
	gold, err := delta.ReadTable[schema.GoldRow](ctx, l, schema.Gold, nil)
	if err != nil {
		t.Fatalf("reading gold: %v", err)
	}
	t.Logf("lake: %d landing segments holding %d batches, %d bronze rows, %d silver windows, %d gold rows",
		len(segs), len(landed), len(bronze), len(silver), len(gold))
	if len(gold) == 0 {
		t.Error("gold is empty")
	}
	checkIndependentReader(t, lakeDir)

	var lakeBytes int64
	filepath.Walk(lakeDir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			lakeBytes += fi.Size()
		}
		return nil
	})
	if sent > 0 {
		t.Logf("lake size %d bytes: %.1f bytes per reading (landing + Delta tables)", lakeBytes, float64(lakeBytes)/float64(sent))
	}

	// The dashboard's data endpoint serves points for both devices.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/series?device=all&range=1h", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var series struct {
		Series []struct {
			Device string `json:"device"`
			Silver struct {
				T     []float64 `json:"t"`
				TempC []float64 `json:"temp_c"`
			} `json:"silver"`
			Gold struct {
				T []float64 `json:"t"`
			} `json:"gold"`
		} `json:"series"`
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET /api/series: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&series); err != nil {
		t.Fatalf("decoding /api/series: %v", err)
	}
	points := map[string]int{}
	for _, s := range series.Series {
		points[s.Device] = len(s.Silver.T)
		if len(s.Silver.TempC) != len(s.Silver.T) {
			t.Errorf("device %s: %d times but %d temperatures", s.Device, len(s.Silver.T), len(s.Silver.TempC))
		}
	}
	for _, d := range devices {
		if points[d] == 0 {
			t.Errorf("dashboard /api/series has no points for %s (got %v)", d, points)
		}
	}
	dashboard.stop(t, 15*time.Second)
}
