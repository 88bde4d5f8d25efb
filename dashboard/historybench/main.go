package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/rollup"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
)

type meta struct {
	StartUS, EndUS int64
	Devices        []string
	Hz             int
	Readings       int64
	BuildSeconds   float64
	SpikeDevice    string
	SpikeUS        int64
	EpochRows      int `json:",omitempty"` // -epoch-rows it was built with (0: the default)
}

func main() {
	var (
		dir       = flag.String("lake", "/dev/shm/pilake-history", "lake directory (built when it has no bench.json)")
		devices   = flag.Int("devices", 100, "devices")
		hours     = flag.Int("hours", 24, "hours of event time")
		hz        = flag.Int("hz", 4, "readings per second per device (event time)")
		dashboard = flag.String("dashboard", "bin/dashboard", "dashboard binary")
		port      = flag.Int("port", 23050, "dashboard port")
		n         = flag.Int("n", 20, "warm requests per view")
		duck      = flag.String("duckdb", "dashboard/historybench/duckdb.mjs", "DuckDB script (empty: skip)")
		allPts    = flag.Int("points-all", 410, "points per card in the all-devices view (a 1280 px page: two cards a row)")
		onePts    = flag.Int("points-one", 1200, "points in the one-device view")
		epochRows = flag.Int("epoch-rows", 0, "cut the stages' epochs at this many readings (0: the collector's default); small epochs give the many small files of a live collector (e.g. 24000: a minute of 100 devices)")
	)
	flag.Parse()
	if err := run(*dir, *devices, *hours, *hz, *epochRows, *dashboard, *port, *n, *duck, *allPts, *onePts); err != nil {
		fmt.Fprintln(os.Stderr, "historybench:", err)
		os.Exit(1)
	}
}

func run(dir string, devices, hours, hz, epochRows int, dashboard string, port, n int, duck string, allPts, onePts int) error {
	ctx := context.Background()
	var m meta
	if b, err := os.ReadFile(filepath.Join(dir, "bench.json")); err == nil {
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "reusing the lake in %s (%d devices, %d readings)\n", dir, len(m.Devices), m.Readings)
	} else {
		var err error
		if m, err = build(ctx, dir, devices, hours, hz, epochRows); err != nil {
			return err
		}
	}
	fmt.Printf("lake_devices=%d\nlake_hours=%d\nlake_readings=%d\nlake_build_s=%.0f\nlake_epoch_rows=%d\n", len(m.Devices), (m.EndUS-m.StartUS)/3600e6, m.Readings, m.BuildSeconds, m.EpochRows)
	for _, t := range []string{schema.Silver, schema.Gold, schema.Silver10s, schema.Silver1m, schema.Silver1h} {
		if s, err := delta.Load(ctx, mustLake(dir), t); err == nil {
			fmt.Printf("files_%s=%d\n", t, s.NumFiles())
		}
	}
	return measure(ctx, dir, m, dashboard, port, n, duck, allPts, onePts)
}

func mustLake(dir string) lake.Lake {
	l, err := lake.NewLocal(dir)
	if err != nil {
		panic(err)
	}
	return l
}

// build runs a day of readings of every device through the stages, then the rollups.
func build(ctx context.Context, dir string, devices, hours, hz, epochRows int) (meta, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return meta{}, err
	}
	l, err := lake.NewLocal(dir)
	if err != nil {
		return meta{}, err
	}
	start := time.Now()
	end := time.Now().Truncate(time.Minute)
	m := meta{StartUS: end.Add(-time.Duration(hours) * time.Hour).UnixMicro(), EndUS: end.UnixMicro(), Hz: hz, EpochRows: epochRows}
	for d := range devices {
		m.Devices = append(m.Devices, fmt.Sprintf("dev-%05d", d))
	}
	m.SpikeDevice = m.Devices[len(m.Devices)/2]
	m.SpikeUS = end.Add(-3*time.Hour).UnixMicro() + 500_000
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := stages.New(l, stages.Options{MaxSkew: -1, SkipShutdownScan: true, Logger: log, MaxEpochRows: epochRows})
	if err != nil {
		return m, err
	}
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- p.Run(rctx) }()
	// The rollups run beside the stages, as in the collector.
	r := rollup.New(l, rollup.Options{Logger: log})
	rollDone := make(chan error, 1)
	go func() { rollDone <- r.Run(rctx) }()
	const batchS = 60
	per := batchS * hz
	step := int64(1_000_000 / hz)
	for s := int64(0); m.StartUS+s*batchS*1e6 < m.EndUS; s++ {
		base := m.StartUS + s*batchS*1e6
		for di, dev := range m.Devices {
			b := &wire.Batch{DeviceID: dev, BootID: 1, Seq: uint64(s + 1), IntervalUS: uint32(step), Readings: make([]wire.Reading, per)}
			for j := range b.Readings {
				ts := base + int64(j)*step + int64(di)
				x := float64(ts-m.StartUS) / 3600e6 // hours
				temp := 21 + 2*math.Sin(x*2*math.Pi/24+float64(di)) + 0.05*math.Sin(float64(j))
				if dev == m.SpikeDevice && ts >= m.SpikeUS-500_000 && ts < m.SpikeUS+500_000 {
					temp += 25 // a one-second spike
				}
				b.Readings[j] = wire.Reading{TimeUS: ts, Temp: int32(math.Round(temp * 100)),
					Press: uint32((101000 + 300*math.Sin(x/3+float64(di))) * 256), Hum: uint32((45 + 10*math.Cos(x/5+float64(di))) * 1024), Fresh: j%2 == 0}
			}
			m.Readings += int64(per)
			if err := p.Submit(rctx, landing.Landed{Name: "landing/bench", Batch: b, ReceivedAt: time.UnixMicro(base + batchS*1e6), Source: "mqtt"}); err != nil {
				cancel()
				return m, err
			}
		}
		if s%120 == 0 {
			fmt.Fprintf(os.Stderr, "built %d of %d h of event time (%v)\n", s/60, hours, time.Since(start).Round(time.Second))
		}
	}
	cancel()
	if err := <-errc; err != nil {
		return m, fmt.Errorf("stages: %w", err)
	}
	<-rollDone
	for quiet := 0; quiet < 2; {
		k, err := r.Step(ctx)
		if err != nil {
			return m, err
		}
		if k == 0 {
			quiet++
		}
	}
	m.BuildSeconds = time.Since(start).Seconds()
	b, _ := json.Marshal(m)
	return m, os.WriteFile(filepath.Join(dir, "bench.json"), b, 0o644)
}

type view struct {
	Name           string
	Device         string // "" all
	FromMS, ToMS   int64
	Points         int
	SilverFiles    []string `json:",omitempty"`
	GoldFiles      []string `json:",omitempty"`
	BucketMS       int64
	pilake         []float64
	cold, bytes    float64
	drawn, spikeOK int
}

func views(m meta, allPts, onePts int) []*view {
	end := m.EndUS / 1000
	spans := []struct {
		name     string
		from, to int64
	}{
		{"1m", end - 60e3, end}, {"15m", end - 900e3, end}, {"1h", end - 3600e3, end}, {"24h", end - 86400e3, end},
		{"custom6h", end - 10*3600e3, end - 4*3600e3},
	}
	if whole := m.EndUS/1000 - m.StartUS/1000; whole > 86400e3 {
		spans = append(spans, struct {
			name     string
			from, to int64
		}{fmt.Sprintf("custom%dd", whole/86400e3), m.StartUS / 1000, end})
	}
	var out []*view
	for _, dev := range []string{"", m.SpikeDevice} {
		for _, sp := range spans {
			name, pts := "all_"+sp.name, allPts
			if dev != "" {
				name, pts = "one_"+sp.name, onePts
			}
			out = append(out, &view{Name: name, Device: dev, FromMS: sp.from, ToMS: sp.to, Points: pts,
				BucketMS: max(1, (sp.to-sp.from+int64(pts)-1)/int64(pts))})
		}
	}
	return out
}

func measure(ctx context.Context, dir string, m meta, bin string, port, n int, duck string, allPts, onePts int) error {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.CommandContext(ctx, bin, "--lake", dir, "--listen", addr, "--broker", "", "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the dashboard: %w", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	base := "http://" + addr
	for i := 0; ; i++ {
		if r, err := http.Get(base + "/healthz"); err == nil {
			r.Body.Close()
			break
		}
		if i > 100 {
			return errors.New("the dashboard did not answer /healthz")
		}
		time.Sleep(100 * time.Millisecond)
	}
	vs := views(m, allPts, onePts)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	get := func(v *view) (time.Duration, int, error) {
		q := fmt.Sprintf("%s/api/series?device=%s&from=%d&to=%d&points=%d", base, cmp(v.Device, "all"), v.FromMS, v.ToMS, v.Points)
		req, _ := http.NewRequestWithContext(ctx, "GET", q, nil)
		req.Header.Set("Accept-Encoding", "gzip") // as a browser does
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, 0, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		el := time.Since(t0)
		if resp.StatusCode != 200 {
			return 0, 0, fmt.Errorf("%s: %d %s", q, resp.StatusCode, b)
		}
		return el, len(b), err
	}
	// Cold: each view's first request, in order (the cache fills as it goes).
	for _, v := range vs {
		el, nb, err := get(v)
		if err != nil {
			return err
		}
		v.cold, v.bytes = ms(el), float64(nb)
	}
	for range n {
		for _, v := range vs {
			el, _, err := get(v)
			if err != nil {
				return err
			}
			v.pilake = append(v.pilake, ms(el))
		}
	}
	rss, hwm := procStatus(cmd.Process.Pid)
	// Points drawn and the spike, from an uncompressed copy of each answer.
	for _, v := range vs {
		resp, err := http.Get(fmt.Sprintf("%s/api/series?device=%s&from=%d&to=%d&points=%d", base, cmp(v.Device, "all"), v.FromMS, v.ToMS, v.Points))
		if err != nil {
			return err
		}
		var body struct {
			Series []struct {
				Device string
				Silver map[string][]float64
				Gold   map[string][]float64
			}
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		for _, s := range body.Series {
			v.drawn += len(s.Silver["t"]) + len(s.Gold["t"])
			if s.Device == m.SpikeDevice && slices.ContainsFunc(s.Silver["temp_c_hi"], func(x float64) bool { return x > 40 }) {
				v.spikeOK = 1
			}
		}
	}
	duckRes := map[string][]float64{}
	if duck != "" {
		var err error
		if duckRes, err = runDuck(ctx, dir, duck, vs, n); err != nil {
			return err
		}
	}
	worst, worstRatio := 0.0, 0.0
	for _, v := range vs {
		p50, p95 := pct(v.pilake, 50), pct(v.pilake, 95)
		worst = max(worst, p95)
		line := fmt.Sprintf("view=%s pilake_p50_ms=%.1f pilake_p95_ms=%.1f pilake_cold_ms=%.1f bytes=%.0f points=%d spike_visible=%d",
			v.Name, p50, p95, v.cold, v.bytes, v.drawn, v.spikeOK)
		if d := duckRes[v.Name]; len(d) > 0 {
			d50, d95 := pct(d, 50), pct(d, 95)
			line += fmt.Sprintf(" duckdb_p50_ms=%.1f duckdb_p95_ms=%.1f ratio_p95=%.2f", d50, d95, p95/d95)
			worstRatio = max(worstRatio, p95/d95)
		}
		fmt.Println(line)
	}
	fmt.Printf("dashboard_rss_now_mib=%.0f\n", rss)
	fmt.Printf("history_p95_ms_max=%.1f\n", worst)
	if len(duckRes) > 0 {
		fmt.Printf("history_vs_duckdb_max=%.2f\n", worstRatio)
	}
	fmt.Printf("dashboard_rss_mib=%.0f\n", hwm)
	return nil
}

func cmp(a, b string) string {
	if a == "" {
		return b
	}
	return a
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// procStatus returns VmRSS and VmHWM (the high-water mark) in MiB.
func procStatus(pid int) (rss, hwm float64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch k {
		case "VmRSS":
			rss = kb / 1024
		case "VmHWM":
			hwm = kb / 1024
		}
	}
	return rss, hwm
}

// runDuck gives DuckDB each view over the live silver and gold files (from
// the Delta log), the base tables an engine without the rollups reads.
func runDuck(ctx context.Context, dir, script string, vs []*view, n int) (map[string][]float64, error) {
	l := mustLake(dir)
	files := map[string][]string{}
	for _, t := range []string{schema.Silver, schema.Gold} {
		s, err := delta.Load(ctx, l, t)
		if err != nil {
			return nil, err
		}
		for _, f := range s.Files() {
			files[t] = append(files[t], filepath.Join(dir, t, f.Path))
		}
	}
	for _, v := range vs {
		v.SilverFiles, v.GoldFiles = files[schema.Silver], files[schema.Gold]
	}
	// DuckDB's long views take seconds each: fewer runs of it keep the
	// benchmark within minutes (its p95 of 5 is its worst but one).
	in, err := json.Marshal(map[string]any{"n": min(n, 5), "views": vs})
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(os.TempDir(), fmt.Sprintf("historybench-%d.json", os.Getpid()))
	if err := os.WriteFile(tmp, in, 0o644); err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	cmd := exec.CommandContext(ctx, "node", script, tmp)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("running %s: %w", script, err)
	}
	res := map[string][]float64{}
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("reading %s's output: %w", script, err)
	}
	_ = runtime.NumCPU
	return res, nil
}
