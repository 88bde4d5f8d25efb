package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/scripts/testenv"
)

// The fault tests run the real agent and collector binaries against their
// own Mosquitto processes (never the shared one: these stop and kill it), on
// ports 27000-27999, and check the lake independently of the collector's
// metrics: every reading each agent captured (its --summary-file) is in
// bronze exactly once, by (device, boot, seq, ts), and silver_late is empty.
//
// The scenarios run side by side (t.Parallel; TestMain lifts the default
// -parallel limit of GOMAXPROCS, since the tests mostly wait on their
// processes), so the package takes about one outage plus its drain.

// outage is how long each scenario's fault lasts: the broker down, the
// shared group without a member, the outage before the collector is killed
// while the backlog drains. 30 s, as in issue 15: longer than the
// collector's 10 s allowed lateness, so a backlog sent out of order would
// land in silver_late.
const outage = 30 * time.Second

// mosquitto is a Mosquitto process the test may stop, kill and restart on
// the same port.
type mosquitto struct {
	t       *testing.T
	bin     string
	conf    string
	port    int
	persist bool
	p       *proc
	dir     string
	n       int
}

// faultPorts are the ports faultPort gave out in this process: never
// twice, so rigs running side by side cannot pick each other's ports, also
// not a broker's while it is down for its outage.
var faultPorts struct {
	sync.Mutex
	given map[int]bool
}

// faultPort picks a free port in 27000-27999 (this test's range).
func faultPort(t *testing.T) int {
	t.Helper()
	faultPorts.Lock()
	defer faultPorts.Unlock()
	if faultPorts.given == nil {
		faultPorts.given = map[int]bool{}
	}
	for range 200 {
		p := 27000 + rand.IntN(1000)
		if faultPorts.given[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			l.Close()
			faultPorts.given[p] = true
			return p
		}
	}
	t.Fatal("no free port in 27000-27999")
	return 0
}

func startMosquitto(t *testing.T, dir string, persist bool) *mosquitto {
	t.Helper()
	testenv.Mosquitto(t) // skip, or fail under PILAKE_TEST_REQUIRE, like every broker test
	bin := os.Getenv("PILAKE_MOSQUITTO_BIN")
	if bin == "" {
		bin = "/usr/sbin/mosquitto"
	}
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("mosquitto binary %s: %v", bin, err)
	}
	m := &mosquitto{t: t, bin: bin, persist: persist, dir: dir}
	m.conf = filepath.Join(dir, "mosquitto.conf")
	// Another process may take the port between faultPort's check and
	// Mosquitto's bind: then take another one (only before the first start;
	// a restart needs the same port).
	for try := 1; ; try++ {
		m.port = faultPort(t)
		m.writeConf()
		m.n++
		m.p = start(t, dir, fmt.Sprintf("mosquitto-%d", m.n), bin, "-c", m.conf)
		err := listening(m.p, m.port)
		if err == nil {
			return m
		}
		if try == 3 || !strings.Contains(err.Error(), "Address already in use") {
			t.Fatal(err)
		}
		t.Logf("port %d taken meanwhile; trying another: %v", m.port, err)
	}
}

func (m *mosquitto) writeConf() {
	m.t.Helper()
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nmax_queued_messages 200000\n"+
		"log_dest stderr\nlog_type error\nlog_type warning\n", m.port)
	if m.persist {
		// Saved on a clean stop; autosave far away, so a kill loses what
		// came since the last save, as a default Mosquitto (30 min) would.
		conf += fmt.Sprintf("persistence true\npersistence_location %s/\nautosave_interval 3600\n", m.dir)
	} else {
		conf += "persistence false\n"
	}
	if err := os.WriteFile(m.conf, []byte(conf), 0o644); err != nil {
		m.t.Fatal(err)
	}
}

// listening waits until p listens on port, or returns why not (p's log
// when it exited).
func listening(p *proc, port int) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-p.done:
			return fmt.Errorf("%s exited early (%v); log:\n%s", p.name, err, tail(p.log))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s is not listening on %d; log:\n%s", p.name, port, tail(p.log))
}

func (m *mosquitto) url() string { return fmt.Sprintf("tcp://127.0.0.1:%d", m.port) }

func (m *mosquitto) start() {
	m.t.Helper()
	m.n++
	m.p = start(m.t, m.dir, fmt.Sprintf("mosquitto-%d", m.n), m.bin, "-c", m.conf)
	waitPort(m.t, m.p, m.port)
}

// down stops (SIGTERM: a clean stop, which saves a persistent broker's
// state) or kills (SIGKILL) the broker.
func (m *mosquitto) down(kill bool) {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	m.p.cmd.Process.Signal(sig)
	select {
	case <-m.p.done:
	case <-time.After(10 * time.Second):
		m.t.Fatalf("mosquitto did not stop; log:\n%s", tail(m.p.log))
	}
}

type faultRig struct {
	t          *testing.T
	dir        string
	agentBin   string
	collBin    string
	lakeDir    string
	broker     *mosquitto
	coll       *proc
	collArgs   []string
	metricsURL string
	agents     map[string]*proc
	collectorN int
	// newClientID gives every collector start its own MQTT client id (a
	// replacement machine), so nothing queued in an earlier session reaches it.
	newClientID bool
}

var faultBins struct {
	once             sync.Once
	dir              string // removed by TestMain
	agent, collector string
	err              error
}

func newFaultRig(t *testing.T, persist bool, collArgs ...string) *faultRig {
	t.Helper()
	if testing.Short() {
		t.Skip("fault tests build and run the programs")
	}
	dir := t.TempDir()
	if os.Getenv("PILAKE_E2E_KEEP") != "" { // keep the logs and the lake to look at
		var err error
		if dir, err = os.MkdirTemp("", "pilake-"+strings.ReplaceAll(t.Name(), "/", "-")); err != nil {
			t.Fatal(err)
		}
	}
	faultBins.once.Do(func() {
		root := moduleRoot(t)
		bins, err := os.MkdirTemp("", "pilake-fault-bins")
		if err != nil {
			faultBins.err = err
			return
		}
		faultBins.dir = bins
		faultBins.agent = build(t, root, bins, "./agent")
		faultBins.collector = build(t, root, bins, "./collector")
	})
	if faultBins.err != nil || faultBins.agent == "" {
		t.Fatalf("building the binaries: %v", faultBins.err)
	}
	r := &faultRig{t: t, dir: dir, agentBin: faultBins.agent, collBin: faultBins.collector,
		lakeDir: filepath.Join(dir, "lake"), agents: map[string]*proc{}}
	r.broker = startMosquitto(t, dir, persist)
	r.collArgs = collArgs
	r.startCollector()
	return r
}

func (r *faultRig) startCollector() {
	r.t.Helper()
	r.collectorN++
	mport := faultPort(r.t)
	r.metricsURL = fmt.Sprintf("http://127.0.0.1:%d", mport)
	id := "fault-collector"
	if r.newClientID {
		id = fmt.Sprintf("fault-collector-%d", r.collectorN)
	}
	args := append([]string{"--lake", r.lakeDir, "--broker", r.broker.url(), "--client-id", id,
		"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", mport), "--commit-interval", "200ms"}, r.collArgs...)
	r.coll = start(r.t, r.dir, fmt.Sprintf("collector-%d", r.collectorN), r.collBin, args...)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(r.metricsURL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case err := <-r.coll.done:
			r.t.Fatalf("collector exited early (%v); log:\n%s", err, tail(r.coll.log))
		case <-time.After(50 * time.Millisecond):
		}
	}
	r.t.Fatalf("collector not ready; log:\n%s", tail(r.coll.log))
}

func (r *faultRig) killCollector() {
	r.coll.cmd.Process.Kill()
	<-r.coll.done
}

func (r *faultRig) startAgent(device string, extra ...string) {
	args := append([]string{"--simulate", "--device-id", device, "--broker", r.broker.url(),
		"--spool-dir", filepath.Join(r.dir, "spool-"+device), "--summary-file", filepath.Join(r.dir, device+".summary.json"),
		"--metrics-addr", "", "--batch-interval", "250ms", "--landing-timeout", "2s", "--reconnect-max", "1s",
		"--shutdown-timeout", "40s"}, extra...)
	r.agents[device] = start(r.t, r.dir, "agent-"+device, r.agentBin, args...)
}

// finish stops the agents (each drains until its batches are acknowledged
// as landed), then the collector, and checks the lake: every reading each
// agent captured in bronze exactly once, and silver_late empty.
func (r *faultRig) finish() {
	t := r.t
	t.Helper()
	for _, a := range r.agents {
		a.stop(t, 60*time.Second)
	}
	r.coll.stop(t, 60*time.Second)
	t.Logf("logs and lake in %s", r.dir)
	ctx := context.Background()
	l, err := lake.NewLocal(r.lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	bronze, err := delta.ReadTable[schema.BronzeRow](ctx, l, schema.Bronze, nil)
	if err != nil {
		t.Fatalf("reading bronze: %v", err)
	}
	type key struct {
		dev       string
		boot, seq int64
		ts        int64
	}
	seen := make(map[key]int, len(bronze))
	perDev := map[string]int64{}
	for _, row := range bronze {
		seen[key{row.Device, row.Boot, row.Seq, row.TS}]++
		perDev[row.Device]++
	}
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	if dups != 0 {
		t.Errorf("bronze holds %d duplicate readings", dups)
	}
	for d := range r.agents {
		var s summary
		b, err := os.ReadFile(filepath.Join(r.dir, d+".summary.json"))
		if err != nil {
			t.Fatalf("agent %s left no summary: %v", d, err)
		}
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatalf("agent %s summary: %v", d, err)
		}
		boot, _ := strconv.ParseUint(s.Boot, 16, 64)
		var inBronze int64
		for k, c := range seen {
			if k.dev == d && uint64(k.boot) == boot {
				inBronze += int64(c)
			}
		}
		t.Logf("agent %s: captured %d readings, %d acknowledged as landed, %d dropped; bronze holds %d of its boot",
			d, s.ReadingsSampled, s.ReadingsAcked, s.DroppedReadings, inBronze)
		if s.ReadingsSampled == 0 {
			t.Errorf("agent %s captured nothing", d)
		}
		if inBronze != s.ReadingsSampled {
			t.Errorf("agent %s: captured %d readings, bronze holds %d (lost %d)", d, s.ReadingsSampled, inBronze, s.ReadingsSampled-inBronze)
		}
		if s.ReadingsAcked != s.ReadingsSampled || s.DroppedReadings != 0 {
			t.Errorf("agent %s: %d readings captured, %d acknowledged as landed, %d dropped", d, s.ReadingsSampled, s.ReadingsAcked, s.DroppedReadings)
		}
	}
	late, err := delta.ReadTable[schema.SilverLateRow](ctx, l, schema.SilverLate, nil)
	if err != nil {
		t.Fatalf("reading silver_late: %v", err)
	}
	t.Logf("lake: bronze holds %d readings, %d of them duplicates; silver_late holds %d", len(bronze), dups, len(late))
	if len(late) != 0 {
		seqs := map[string]int{}
		for _, lr := range late {
			k := fmt.Sprintf("%s seq %d ts %s recv %s wm %s", lr.Device, lr.Seq, time.UnixMicro(lr.TS).Format("15:04:05.000"),
				time.UnixMicro(lr.ReceivedAt).Format("15:04:05.000"), time.UnixMicro(lr.Watermark).Format("15:04:05.000"))
			k = k[:strings.Index(k, " ts ")] + k[strings.Index(k, " recv "):]
			seqs[k]++
		}
		t.Errorf("silver_late holds %d readings, want none (backlog delivered oldest first): %v", len(late), seqs)
	}
	// Every window is in silver, whole and final (the agents' last batches
	// end their streams), and has its gold rows.
	silver, err := delta.ReadTable[schema.SilverRow](ctx, l, schema.Silver, nil)
	if err != nil {
		t.Fatalf("reading silver: %v", err)
	}
	var inSilver int64
	for _, w := range silver {
		inSilver += w.Count
	}
	gold, err := delta.ReadTable[schema.GoldRow](ctx, l, schema.Gold, nil)
	if err != nil {
		t.Fatalf("reading gold: %v", err)
	}
	t.Logf("lake: silver has %d windows counting %d readings, gold %d rows", len(silver), inSilver, len(gold))
	if inSilver != int64(len(bronze)) {
		t.Errorf("silver windows count %d readings, bronze holds %d", inSilver, len(bronze))
	}
	if len(gold) != 3*len(silver) {
		t.Errorf("gold has %d rows for %d silver windows, want 3 each", len(gold), len(silver))
	}
}

func sleepOrFail(t *testing.T, d time.Duration, ps ...*proc) {
	t.Helper()
	deadline := time.After(d)
	for _, p := range ps {
		select {
		case err := <-p.done:
			t.Fatalf("%s exited (%v); log:\n%s", p.name, err, tail(p.log))
		default:
		}
	}
	<-deadline
}

// TestFaultExternalBroker stops or kills the external Mosquitto mid-stream
// for 30 s (with and without persistence): whatever the broker
// acknowledged and lost, the agents resend until the collector's landing
// acks name it.
func TestFaultExternalBroker(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		persist, kill bool
	}{
		{"no-persistence-killed", false, true},
		{"no-persistence-stopped", false, false},
		{"persistence-killed", true, true},
		{"persistence-stopped", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // mostly waiting: four rigs side by side
			r := newFaultRig(t, tc.persist)
			r.startAgent("fault-a")
			r.startAgent("fault-b")
			sleepOrFail(t, 3*time.Second, r.coll)
			r.broker.down(tc.kill)
			time.Sleep(outage)
			r.broker.start()
			sleepOrFail(t, 4*time.Second, r.coll)
			r.finish()
		})
	}
}

// TestFaultCollectorKilledWhileBacklogDrains: the collector is killed
// (SIGKILL) while the agents' backlog drains through a persistent external
// broker, twice; every reading ends up in bronze once, and the backlog,
// sent oldest first, leaves silver_late empty.
func TestFaultCollectorKilledWhileBacklogDrains(t *testing.T) {
	t.Parallel()
	r := newFaultRig(t, false)
	r.startAgent("fault-c", "--backlog-rate", "8")
	sleepOrFail(t, 2*time.Second, r.coll)
	r.broker.down(true) // an outage: the agent's spool fills
	time.Sleep(outage)
	r.broker.start()
	time.Sleep(1500 * time.Millisecond) // the backlog is draining
	r.killCollector()
	time.Sleep(time.Second)
	r.startCollector()
	time.Sleep(1500 * time.Millisecond)
	r.killCollector()
	r.startCollector()
	sleepOrFail(t, 4*time.Second, r.coll)
	r.finish()
}

// TestFaultSharedGroupWithoutMember: a $share group whose only member
// stops, and is replaced (a new client id) 30 s later: what the broker took
// meanwhile never reaches the new member (Mosquitto drops it, or queues it
// in the old member's session); agents resend it after their landing
// timeout, oldest first. The member's clean stop keeps the window it was
// filling open (the rest of it was in flight), so silver_late stays empty.
func TestFaultSharedGroupWithoutMember(t *testing.T) {
	t.Parallel()
	r := newFaultRig(t, false, "--share-group", "faultgrp")
	r.newClientID = true
	r.startAgent("fault-d")
	sleepOrFail(t, 2*time.Second, r.coll)
	r.coll.stop(t, 30*time.Second)
	time.Sleep(outage) // a group with no member
	r.startCollector()
	sleepOrFail(t, 4*time.Second, r.coll)
	r.finish()
}

// TestFaultClockSteps: an agent's wall clock is stepped forward a day, back,
// back a day and forward again (as a Pi set wrong and corrected would see);
// the batches are cut at each step and the collector re-bases the stepped
// ones from their monotonic offset: every reading in bronze once, each
// within the run's real time span (none a day off, none quarantined).
func TestFaultClockSteps(t *testing.T) {
	t.Parallel()
	r := newFaultRig(t, false)
	began := time.Now()
	r.startAgent("fault-e", "--simulate-clock-steps", "2s:+24h,4s:-24h,6s:-24h,8s:+24h")
	sleepOrFail(t, 10*time.Second, r.coll)
	r.finish()
	ended := time.Now()
	l, err := lake.NewLocal(r.lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	bronze, err := delta.ReadTable[schema.BronzeRow](context.Background(), l, schema.Bronze, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range bronze {
		if ts := time.UnixMicro(row.TS); ts.Before(began.Add(-time.Minute)) || ts.After(ended.Add(time.Minute)) {
			t.Fatalf("reading of batch %d at %s, outside the run (%s to %s)", row.Seq, ts.UTC(), began.UTC(), ended.UTC())
		}
	}
	if objs, _ := l.List(context.Background(), schema.Quarantine); len(objs) != 0 {
		t.Errorf("%d quarantine objects, want none", len(objs))
	}
}
