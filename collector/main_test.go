package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/landing/landingtest"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/internal/testwait"
	"github.com/pilake/pilake/scripts/testenv"
)

//go:embed collector.conf.example
var exampleConf string

func TestExampleConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "collector.conf")
	if err := os.WriteFile(p, []byte(exampleConf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig([]string{"--config", p}, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	if cfg.Lake != "./lake" || cfg.Listen != "127.0.0.1:1883" || cfg.Window != time.Second || cfg.MovingAverages != "8,15,60" {
		t.Fatalf("example config read as %+v", cfg)
	}
}

func TestConfigValidate(t *testing.T) {
	env := map[string]string{"PILAKE_WINDOW": "500ms"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cfg, err := loadConfig([]string{"--lake", "x"}, lookup, io.Discard)
	if err != nil || cfg.Window != 500*time.Millisecond {
		t.Fatalf("env window: %v, %v", cfg.Window, err)
	}
	if cfg.LandingLinger != landing.DefaultSegmentLinger || linger(cfg.LandingLinger) != landing.DefaultSegmentLinger || linger(0) >= 0 {
		t.Fatalf("landing linger %v maps to %v; 0 maps to %v", cfg.LandingLinger, linger(cfg.LandingLinger), linger(0))
	}
	for _, args := range [][]string{
		{"--azure-container", "c"},     // no credentials
		{"--broker", "localhost:1883"}, // not a URL
		{"--share-group", "g"},         // needs --broker
		{"--moving-averages", "8,x"},   // bad list
		{"--window", "0s"},             // no window... (zero means default: use negative)
		{"--log-format", "xml"},        // unknown
		{"--listen", "nope"},           // not host:port
		{"--broker", "tcp://h:1", "--share-group", "a/b"},
		{"--landing-linger", "-1ms"}, // negative
		{"--landing-linger", "2s"},   // beyond 1s
	} {
		if args[0] == "--window" {
			args = []string{"--window", "-1s"}
		}
		if _, err := loadConfig(args, lookup, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

func encode(t testing.TB, device string, boot, seq uint64, n int, t0 time.Time, flags ...uint8) []byte {
	t.Helper()
	b := &wire.Batch{DeviceID: device, BootID: boot, Seq: seq, IntervalUS: 2500, Flags: wire.FlagClockSynced}
	for _, f := range flags {
		b.Flags |= f
	}
	start := t0.UnixMicro() + int64(seq-1)*int64(n)*2500
	for i := range n {
		b.Readings = append(b.Readings, wire.Reading{TimeUS: start + int64(i)*2500, Temp: 2000 + int32(i%50), Press: 101325 * 256, Hum: 40 * 1024, Fresh: i%4 == 0})
	}
	data, err := wire.NewEncoder(wire.Binary).Append(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

type runningCollector struct {
	st     started
	cancel context.CancelFunc
	done   chan error
}

func startCollector(t *testing.T, cfg Config) *runningCollector {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rc := &runningCollector{cancel: cancel, done: make(chan error, 1)}
	up := make(chan started, 1)
	go func() {
		rc.done <- run(ctx, cfg, slog.New(slog.DiscardHandler), func(s started) { up <- s })
	}()
	select {
	case rc.st = <-up:
	case err := <-rc.done:
		t.Fatalf("collector did not start: %v", err)
	}
	t.Cleanup(func() { rc.stop(t) })
	return rc
}

func (rc *runningCollector) stop(t *testing.T) {
	t.Helper()
	if rc.cancel == nil {
		return
	}
	rc.cancel()
	rc.cancel = nil
	if err := <-rc.done; err != nil {
		t.Fatalf("collector: %v", err)
	}
}

func testConfig(t *testing.T) Config {
	var c Config
	fs := newFlagSet(&c)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	c.Lake = t.TempDir()
	c.Listen = "127.0.0.1:0"
	c.MetricsAddr = "127.0.0.1:0"
	c.CommitInterval = 100 * time.Millisecond
	c.MaxSkew = -1
	return c
}

// agents publishes devices×per batches of n readings with QoS 1 and waits
// for every PUBACK; it returns the readings sent. Each device's last batch
// says so (wire.FlagLast), as an agent's at a clean stop does.
func agents(t *testing.T, url string, devices, per, n int) int {
	t.Helper()
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for d := range devices {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("agent-%d-%d", d, rand.Uint32())))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connecting: %v", tok.Error())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Disconnect(100)
			dev := fmt.Sprintf("pi-%d", d)
			var toks []paho.Token
			for s := 1; s <= per; s++ {
				var flags uint8
				if s == per {
					flags = wire.FlagLast
				}
				toks = append(toks, c.Publish(wire.TelemetryTopic(dev), 1, false, encode(t, dev, 7, uint64(s), n, t0, flags)))
			}
			for _, tok := range toks {
				if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
					t.Errorf("publish: %v", tok.Error())
				}
			}
		}()
	}
	wg.Wait()
	return devices * per * n
}

func checkLake(t *testing.T, dir string, devices, per, readings int) {
	t.Helper()
	lk, err := lake.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if got := landingtest.Copies(t, lk); len(got) != devices*per {
		t.Fatalf("landing/ holds %d batches, want %d", len(got), devices*per)
	}
	bronze, err := delta.ReadTable[schema.BronzeRow](ctx, lk, schema.Bronze, nil)
	if err != nil || len(bronze) != readings {
		t.Fatalf("bronze has %d rows (%v), want %d", len(bronze), err, readings)
	}
	silver, err := delta.ReadTable[schema.SilverRow](ctx, lk, schema.Silver, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, r := range silver {
		sum += r.Count
	}
	if sum != int64(readings) {
		t.Fatalf("silver counts add up to %d, want %d (every window finalised at shutdown)", sum, readings)
	}
	gold, err := delta.ReadTable[schema.GoldRow](ctx, lk, schema.Gold, nil)
	if err != nil || len(gold) != 3*len(silver) {
		t.Fatalf("gold has %d rows (%v), want 3 per silver window (%d)", len(gold), err, len(silver))
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEmbeddedBrokerEndToEnd(t *testing.T) {
	cfg := testConfig(t)
	rc := startCollector(t, cfg)
	if code, _ := get(t, rc.st.Metrics+"/readyz"); code != 200 {
		t.Fatalf("/readyz = %d", code)
	}
	// A dashboard-like subscriber sees live updates.
	liveC := paho.NewClient(paho.NewClientOptions().AddBroker(rc.st.MQTT).SetClientID("dash"))
	if tok := liveC.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	gotLive := make(chan string, 1)
	if tok := liveC.Subscribe(wire.LiveFilter, 0, func(_ paho.Client, m paho.Message) {
		select {
		case gotLive <- m.Topic():
		default:
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	const devices, per, n = 4, 12, 400
	readings := agents(t, rc.st.MQTT, devices, per, n)
	if topic := <-gotLive; !strings.HasPrefix(topic, "pilake/v1/live/pi-") {
		t.Fatalf("live update on %q", topic)
	}
	liveC.Disconnect(0)
	// Garbage is quarantined, not fatal.
	bad := paho.NewClient(paho.NewClientOptions().AddBroker(rc.st.MQTT).SetClientID("bad"))
	if tok := bad.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if tok := bad.Publish(wire.TelemetryTopic("pi-x"), 1, false, []byte("\x01garbage")); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	bad.Disconnect(0)
	_, metrics := get(t, rc.st.Metrics+"/metrics")
	for _, want := range []string{
		fmt.Sprintf("pilake_collector_batches_in_total %d", devices*per),
		fmt.Sprintf("pilake_collector_readings_in_total %d", readings),
		`pilake_collector_quarantined_total{kind="corrupt"} 1`,
		`pilake_collector_lake_errors_total{kind="landing"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	rc.stop(t)
	checkLake(t, cfg.Lake, devices, per, readings)
}

func TestExternalBrokerEndToEnd(t *testing.T) {
	url := testenv.PrivateMosquitto(t)
	cfg := testConfig(t)
	cfg.Broker = url
	cfg.ClientID = fmt.Sprintf("collector-%d", rand.Uint32())
	rc := startCollector(t, cfg)
	waitReady(t, rc) // subscribed to the external broker
	const devices, per, n = 3, 10, 100
	readings := agents(t, url, devices, per, n)
	// The broker acknowledged the agents; wait until the collector landed all.
	testwait.Until(t, "the collector to land every batch from the external broker", func() bool {
		_, m := get(t, rc.st.Metrics+"/metrics")
		return strings.Contains(m, fmt.Sprintf("pilake_collector_batches_in_total %d", devices*per))
	})
	rc.stop(t)
	checkLake(t, cfg.Lake, devices, per, readings)
}

// TestAzureLakeAndRouting runs the collector on an Azure lake (Azurite) with
// IoT Hub routing ingest from the same container, plus MQTT.
func TestAzureLakeAndRouting(t *testing.T) {
	az := testenv.AzuriteBlob(t)
	cfg := testConfig(t)
	cfg.Lake = ""
	cfg.AzureConnectionString = az.ConnectionString()
	cfg.AzureContainer = fmt.Sprintf("collector-%d", rand.Uint32())
	cfg.IoTHubRoutingPrefix = "myhub/"
	cfg.IoTHubPollInterval = 50 * time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	lk, err := lake.NewAzure(ctx, cfg.azureOptions(cfg.AzureContainer))
	if err != nil {
		t.Fatal(err)
	}
	// A routing file as IoT Hub writes it with the JSON encoding (base64 bodies).
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	var file bytes.Buffer
	const routed = 5
	for s := 1; s <= routed; s++ {
		body := encode(t, "hub-dev", 9, uint64(s), 400, t0)
		fmt.Fprintf(&file, `{"EnqueuedTimeUtc":"2026-11-24T12:00:%02d.0000000Z","Properties":{},"SystemProperties":{"connectionDeviceId":"hub-dev"},"Body":%q}`+"\n",
			s, base64.StdEncoding.EncodeToString(body))
	}
	if err := lk.Put(ctx, "myhub/0/2026/11/24/12/00.json", file.Bytes()); err != nil {
		t.Fatal(err)
	}
	rc := startCollector(t, cfg)
	const devices, per, n = 2, 5, 400
	readings := agents(t, rc.st.MQTT, devices, per, n) + routed*400
	testwait.Until(t, "the routing file and the agents' batches to land", func() bool {
		_, m := get(t, rc.st.Metrics+"/metrics")
		return strings.Contains(m, fmt.Sprintf("pilake_collector_readings_in_total %d", readings))
	})
	rc.stop(t)
	if got := landingtest.Copies(t, lk); len(got) != devices*per+routed {
		t.Fatalf("landing/ in Azure holds %d batches, want %d", len(got), devices*per+routed)
	}
	bronze, err := delta.ReadTable[schema.BronzeRow](ctx, lk, schema.Bronze, nil)
	if err != nil || len(bronze) != readings {
		t.Fatalf("bronze in Azure has %d rows (%v), want %d", len(bronze), err, readings)
	}
	var fromHub int
	for _, r := range bronze {
		// The stages' startup scan of landing/ runs while ingest starts: a
		// batch landed in that window is taken by the scan (source
		// "recovered") and its submission is then a duplicate.
		if r.Device == "hub-dev" && (r.Source == "iothub" || r.Source == "recovered") {
			fromHub++
		}
	}
	if fromHub != routed*400 {
		t.Fatalf("%d bronze rows of the routed device, want %d", fromHub, routed*400)
	}
}

func TestMetricsPortTakenIsNotFatal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig(t)
	cfg.MetricsAddr = ln.Addr().String()
	rc := startCollector(t, cfg)
	if rc.st.Metrics != "" || rc.st.MQTT == "" {
		t.Fatalf("started %+v: want MQTT serving and no metrics", rc.st)
	}
	readings := agents(t, rc.st.MQTT, 1, 2, 10)
	rc.stop(t)
	checkLake(t, cfg.Lake, 1, 2, readings)
}

// A batch delivered twice to one process is landed once (a duplicate); one
// delivered again after a restart is landed again, in another segment; in
// bronze, each is once.
func TestRedeliveredBatchesInBronzeOnce(t *testing.T) {
	cfg := testConfig(t)
	const devices, per, n = 2, 5, 400
	rc := startCollector(t, cfg)
	readings := agents(t, rc.st.MQTT, devices, per, n)
	agents(t, rc.st.MQTT, devices, per, n) // the same batches again
	_, metrics := get(t, rc.st.Metrics+"/metrics")
	for _, want := range []string{
		fmt.Sprintf("pilake_collector_batches_in_total %d", devices*per),
		fmt.Sprintf("pilake_collector_duplicates_total %d", devices*per),
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if metricValue(metrics, "pilake_collector_landing_segments_total") < 1 {
		t.Error("no landing segments counted")
	}
	rc.stop(t)
	rc = startCollector(t, cfg)
	agents(t, rc.st.MQTT, devices, per, n) // redelivered to a new process
	_, metrics = get(t, rc.st.Metrics+"/metrics")
	if want := fmt.Sprintf("pilake_collector_batches_in_total %d", devices*per); !strings.Contains(metrics, want) {
		t.Errorf("/metrics after the restart lacks %q", want)
	}
	rc.stop(t)
	lk, err := lake.NewLocal(cfg.Lake)
	if err != nil {
		t.Fatal(err)
	}
	for key, copies := range landingtest.Copies(t, lk) {
		if copies != 2 {
			t.Errorf("landing/ holds %d copies of %s, want 2 (one per process)", copies, key)
		}
	}
	checkLake(t, cfg.Lake, devices, per, readings)
}
