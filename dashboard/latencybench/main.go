package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/chromedp/chromedp"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/internal/chromium"
	"github.com/pilake/pilake/internal/conf"
)

type config struct {
	broker, dashboard, chromium, prefix string
	devices                             int
	rate                                float64
	batch, warmup, duration             time.Duration
	freshness                           string // a lake directory: measure table freshness instead of the page
	sseClients                          int    // Go SSE clients on /api/live beside the browser
	aligned                             bool   // all devices' batches end together
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "latencybench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	var c config
	fs := flag.NewFlagSet("latencybench", flag.ContinueOnError)
	fs.String(conf.ConfigFlag, "", "configuration file")
	fs.StringVar(&c.broker, "broker", "tcp://127.0.0.1:1883", "the collector's MQTT broker")
	fs.StringVar(&c.dashboard, "dashboard", "http://127.0.0.1:8050/", "the dashboard's URL")
	fs.StringVar(&c.chromium, "chromium", envOr("PILAKE_TEST_CHROMIUM", "/usr/bin/chromium"), "Chromium executable")
	fs.StringVar(&c.prefix, "prefix", "bench", "device id prefix")
	fs.IntVar(&c.devices, "devices", 100, "simulated devices (0: generate no load)")
	fs.Float64Var(&c.rate, "rate", 400, "readings per second per device")
	fs.DurationVar(&c.batch, "batch", time.Second, "batch interval (the agent's default is 1 s)")
	fs.DurationVar(&c.warmup, "warmup", 5*time.Second, "time before measuring")
	fs.DurationVar(&c.duration, "seconds", 30*time.Second, "measuring time")
	fs.BoolVar(&c.aligned, "aligned", false, "end every device's batches at the same moments (as agents cutting batches on whole seconds of a synchronised clock would), instead of at phases spread evenly over the batch interval (as agents started at random times do)")
	fs.IntVar(&c.sseClients, "sse-clients", 0, "Go clients reading the dashboard's live stream (/api/live) beside the measuring browser (999: 1,000 clients in all)")
	fs.StringVar(&c.freshness, "freshness", "", "the collector's lake directory: instead of the page, measure how far behind now the newest event time in bronze, silver and gold is, reading their Delta logs as another engine would")
	if err := conf.Load(fs, args, "PILAKE_BENCH_", os.LookupEnv); err != nil {
		return err
	}
	if c.rate <= 0 || c.batch <= 0 {
		return errors.New("--rate and --batch must be positive")
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stats loadStats
	if c.devices > 0 {
		clients, err := connect(ctx, c)
		if err != nil {
			return err
		}
		defer func() {
			for _, cl := range clients {
				cl.Disconnect(100)
			}
		}()
		go generate(ctx, c, clients, &stats)
	}

	if c.freshness != "" {
		return freshness(ctx, c)
	}
	var sse sseStats
	if c.sseClients > 0 {
		if err := startSSEClients(ctx, c, &sse); err != nil {
			return err
		}
	}
	bctx, err := openBrowser(ctx, c.chromium)
	if err != nil {
		return err
	}
	url := c.dashboard + "?range=1m"
	if err := chromedp.Do(bctx, chromedp.Navigate(url)); err != nil {
		return fmt.Errorf("opening %s: %w", url, err)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(c.warmup):
	}
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[any](`window.pilake.lat = []; window.pilake.pub = []; window.pilake.at = []; window.pilake.messages = 0; 0`)); err != nil {
		return fmt.Errorf("resetting the page's counters: %w", err)
	}
	sent0 := stats.batches.Load()
	start := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(c.duration):
	}
	elapsed := time.Since(start).Seconds()
	type result struct {
		Lat      []float64 `json:"lat"`
		At       []float64 `json:"at"`
		Pub      []float64 `json:"pub"`
		Messages int       `json:"messages"`
		Status   string    `json:"status"`
	}
	r, err := chromedp.Run(bctx, chromedp.Evaluate[result](`({lat: window.pilake.lat, at: window.pilake.at, pub: window.pilake.pub, messages: window.pilake.messages, status: window.pilake.status})`))
	if err != nil {
		return fmt.Errorf("reading the page's measurements: %w", err)
	}
	if len(r.Lat) == 0 {
		return fmt.Errorf("the page received no live points in %v (status %q): is the collector publishing live updates?", c.duration, r.Status)
	}
	fmt.Printf("devices=%d rate_hz=%g batch_interval=%v seconds=%.1f aligned=%t\n", c.devices, c.rate, c.batch, elapsed, c.aligned)
	fmt.Printf("batches_sent_per_s=%.1f publish_errors=%d\n", float64(stats.batches.Load()-sent0)/elapsed, stats.errors.Load())
	fmt.Printf("live_points=%d live_points_per_s=%.1f page_messages_per_s=%.1f\n", len(r.Lat), float64(len(r.Lat))/elapsed, float64(r.Messages)/elapsed)
	fmt.Printf("collector_p50_ms=%.1f collector_p99_ms=%.1f\n", pct(r.Pub, 50), pct(r.Pub, 99))
	if c.sseClients > 0 {
		fmt.Printf("sse_clients=%d sse_clients_streaming=%d sse_messages_per_s_per_client=%.1f sse_client_p99_ms=%.1f\n", c.sseClients, sse.streaming.Load(),
			float64(sse.messages.Load())/float64(c.sseClients)/time.Since(sse.start).Seconds(), sse.p99())
	}
	fmt.Printf("e2e_p50_ms=%.1f\n", pct(r.Lat, 50))
	fmt.Printf("e2e_p99_ms=%.1f\n", pct(r.Lat, 99))
	fmt.Printf("e2e_max_ms=%.1f\n", pct(r.Lat, 100))
	// Where the slow points were: the seconds (since measuring began) with
	// points over 250 ms, to tell periodic stalls from noise.
	if len(r.At) == len(r.Lat) {
		slow := map[int]float64{}
		for i, l := range r.Lat {
			if l > 250 {
				s := int((r.At[i] - float64(start.UnixMilli())) / 1000)
				slow[s] = max(slow[s], l)
			}
		}
		keys := make([]int, 0, len(slow))
		for k := range slow {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		fmt.Printf("# measuring began at unix ms %d; seconds with points over 250 ms (second:worst_ms):", start.UnixMilli())
		for _, k := range keys {
			fmt.Printf(" %d:%.0f", k, slow[k])
		}
		fmt.Println()
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// pct is the nearest-rank percentile.
func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

type loadStats struct {
	batches, errors atomic.Uint64
}

func connect(ctx context.Context, c config) ([]mqtt.Client, error) {
	var out []mqtt.Client
	for i := 0; i < c.devices; i++ {
		id := fmt.Sprintf("%s-%03d", c.prefix, i)
		cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(c.broker).SetClientID(id).
			SetAutoReconnect(true).SetCleanSession(true).SetMaxResumePubInFlight(64))
		tok := cl.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("connecting %s to %s: timed out", id, c.broker)
		}
		if err := tok.Error(); err != nil {
			return nil, fmt.Errorf("connecting %s to %s: %w", id, c.broker, err)
		}
		out = append(out, cl)
	}
	return out, nil
}

// generate samples every device at c.rate on one drift-free schedule,
// stamping each reading with the wall clock, and publishes each device's
// batch (QoS 1, like the agent) when its batch interval ends. Devices' batch
// boundaries are spread over the interval, as independently started agents'
// are.
func generate(ctx context.Context, c config, clients []mqtt.Client, st *loadStats) {
	type dev struct {
		b      wire.Batch
		phase  int64
		offset float64
	}
	period := time.Duration(float64(time.Second) / c.rate)
	perBatch := int64(math.Max(1, math.Round(c.batch.Seconds()*c.rate)))
	devs := make([]*dev, len(clients))
	spread := int64(len(clients))
	if c.aligned {
		spread = math.MaxInt64 // every phase 0
	}
	for i := range devs {
		devs[i] = &dev{
			b: wire.Batch{DeviceID: fmt.Sprintf("%s-%03d", c.prefix, i), BootID: rand.Uint64(), Seq: 0,
				IntervalUS: uint32(period.Microseconds()), Readings: make([]wire.Reading, 0, perBatch)},
			phase:  int64(i) * perBatch / spread,
			offset: float64(i),
		}
	}
	enc := wire.NewEncoder(wire.Binary)
	var buf []byte
	start := time.Now()
	for tick := int64(0); ; tick++ {
		next := start.Add(time.Duration(tick) * period)
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		} else if ctx.Err() != nil {
			return
		}
		nowUS := time.Now().UnixMicro()
		s := float64(nowUS) / 1e6
		for i, d := range devs {
			temp := 2150 + int32(100*math.Sin(s/30+d.offset))
			d.b.Readings = append(d.b.Readings, wire.Reading{
				TimeUS: nowUS, Temp: temp,
				Press: uint32((101325 + 30*math.Sin(s/50)) * 256),
				Hum:   uint32((45 + 3*math.Sin(s/40+d.offset)) * 1024),
				Fresh: tick%4 == 0,
			})
			if (tick+1+d.phase)%perBatch != 0 {
				continue
			}
			d.b.Seq++
			var err error
			buf, err = enc.Append(buf[:0], &d.b)
			d.b.Readings = d.b.Readings[:0]
			if err != nil {
				st.errors.Add(1)
				continue
			}
			payload := slices.Clone(buf)
			clients[i].Publish(wire.TelemetryTopic(d.b.DeviceID), 1, false, payload)
			st.batches.Add(1)
		}
	}
}

func openBrowser(ctx context.Context, path string) (context.Context, error) {
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(path), chromedp.WindowSize(1280, 900), chromedp.NoDefaultBrowserCheck}
	dir, err := os.MkdirTemp("", "pilake-latency-chromium-")
	if err != nil {
		return nil, err
	}
	go func() { <-ctx.Done(); os.RemoveAll(dir) }()
	opts = append(opts, chromedp.UserDataDir(dir))
	for _, f := range chromium.Flags {
		opts = append(opts, chromedp.Flag(f[2:], true))
	}
	actx, _ := chromedp.NewExecAllocator(ctx, opts...)
	bctx, _ := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx); err != nil {
		return nil, fmt.Errorf("starting Chromium %s: %w", path, err)
	}
	return bctx, nil
}
