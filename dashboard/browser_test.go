package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/dashboard/history"
	"github.com/pilake/pilake/dashboard/internal/laketest"
	"github.com/pilake/pilake/dashboard/internal/sqltest"
	"github.com/pilake/pilake/dashboard/live"
	"github.com/pilake/pilake/dashboard/web"
	"github.com/pilake/pilake/scripts/testenv"
)

// startBroker runs the embedded broker the collector uses (mochi), in-process.
func startBroker(t *testing.T) (string, func()) {
	t.Helper()
	_, url, stop := testenv.Mochi(t, testenv.MochiConfig{})
	return url, stop
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// signal is the fake environment's BME280 signal for device k at time t.
func sensorSignal(k int, t time.Time) (temp, hum, press float64) {
	s := float64(t.UnixMilli()) / 1000
	noise := func(salt uint64) float64 { // deterministic, per second
		x := uint64(t.Unix())*0x9E3779B97F4A7C15 + salt*0xBF58476D1CE4E5B9 + uint64(k)
		x ^= x >> 31
		x *= 0x94D049BB133111EB
		x ^= x >> 29
		return float64(x%2001)/1000 - 1
	}
	temp = 21 + float64(k) + 0.6*math.Sin(s/40+float64(k)) + 0.08*noise(1)
	hum = 42 + 5*float64(k) + 2*math.Sin(s/55) + 0.4*noise(2)
	press = 101325 - 150*float64(k) + 40*math.Sin(s/70) + 6*noise(3)
	return
}

// writeHistory fills silver and gold with the last span of 1 s windows, as
// the collector's stages do, in commits of 60 windows.
func writeHistory(t *testing.T, l lake.Lake, devices []string, span time.Duration) {
	t.Helper()
	w := laketest.NewWriter(t, l)
	end := time.Now().Truncate(time.Second).Add(-2 * time.Second)
	for k, dev := range devices {
		var silver []schema.SilverRow
		var gold []schema.GoldRow
		var temps, hums, presses []float64
		for ts := end.Add(-span); ts.Before(end); ts = ts.Add(time.Second) {
			tc, h, p := sensorSignal(k, ts)
			silver = append(silver, sqltest.Silver(dev, ts.UnixMicro(), tc, h, p))
			temps, hums, presses = append(temps, tc), append(hums, h), append(presses, p)
			gold = append(gold, sqltest.Gold(dev, ts.UnixMicro(), 8, mean8(temps), mean8(hums), mean8(presses)))
			if len(silver) == 60 {
				w.Silver(silver...)
				w.Gold(gold...)
				silver, gold = nil, nil
			}
		}
		if len(silver) > 0 {
			w.Silver(silver...)
			w.Gold(gold...)
		}
	}
}

func mean8(v []float64) float64 {
	if len(v) > 8 {
		v = v[len(v)-8:]
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// feed publishes LiveUpdates for devices like the collector: every 250 ms
// the provisional current window and its gold value, capture time = now.
func feed(ctx context.Context, t *testing.T, broker string, devices []string) {
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("feed").SetAutoReconnect(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Errorf("feed connect: %v", tok.Error())
		return
	}
	go func() {
		defer c.Disconnect(100)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				for k, dev := range devices {
					tc, h, p := sensorSignal(k, now)
					ws := now.Truncate(time.Second).UnixMicro()
					row := sqltest.Silver(dev, ws, tc, h, p)
					lu := schema.LiveUpdate{Device: dev, NewestCaptureUS: now.UnixMicro(), PublishedUS: time.Now().UnixMicro(),
						Silver: []schema.LiveSilver{{SilverRow: row}},
						Gold:   []schema.GoldRow{sqltest.Gold(dev, ws, 8, tc-0.05, h+0.1, p-1)}}
					b, _ := json.Marshal(lu)
					c.Publish(wire.LiveTopic(dev), 0, false, b)
				}
			}
		}
	}()
}

func screenshotDir(t *testing.T) string {
	dir := os.Getenv("PILAKE_SCREENSHOT_DIR")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "pilake-dashboard-screenshots-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

func browser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(testenv.Chromium(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.NoDefaultBrowserCheck,
	}
	for _, f := range testenv.ChromiumFlags {
		name, val, ok := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		if ok {
			opts = append(opts, chromedp.Flag(name, val))
		} else {
			opts = append(opts, chromedp.Flag(name, true))
		}
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	var jsErrs []string
	var mu sync.Mutex
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok && e.ExceptionDetails != nil {
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			mu.Lock()
			jsErrs = append(jsErrs, fmt.Sprintf("%s (%s:%d)", msg, d.URL, d.LineNumber+1))
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range jsErrs {
			t.Errorf("JavaScript exception: %s", e)
		}
	})
	return ctx
}

// waitJS polls a JavaScript condition (the page runs in another process).
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(tctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({status: window.pilake.status, updates: window.pilake.updates,
			loads: window.pilake.loads, error: window.pilake.error, body: document.body.innerText.slice(0, 600)})`))

		t.Fatalf("waiting for %s (%s): %v\npage: %s", what, expr, err, state)
	}
}

func shoot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}

// js runs a JavaScript statement whose value does not matter.
func js(expr string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[any](expr)(ctx, t)
		return chromedp.Void{}, err
	}
}

// startDashboard runs the real program (run) in-process.
func startDashboard(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"--listen", "127.0.0.1:0"}, args...), envOf(nil), discard{}, ready)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dashboard: %v", err)
		}
	})
	select {
	case u := <-ready:
		return u
	case err := <-done:
		t.Fatalf("dashboard did not start: %v", err)
		return ""
	}
}

func TestBrowser(t *testing.T) {
	if !web.HasChartLibrary() {
		if testenv.Required() {
			t.Fatal("the chart library is missing: run dashboard/web/build.sh before the tests")
		}
		t.Skip("the chart library is missing: run dashboard/web/build.sh")
	}
	ctx := browser(t)
	dir := screenshotDir(t)
	devices := []string{"pi-kitchen", "pi-lab"}
	lakeDir := t.TempDir()
	l, err := lake.NewLocal(lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	writeHistory(t, l, devices, 20*time.Minute)
	broker, stopBroker := startBroker(t)
	base := startDashboard(t, "--lake", lakeDir, "--broker", broker)
	fctx, stopFeed := context.WithCancel(context.Background())
	t.Cleanup(stopFeed)
	feed(fctx, t, broker, devices)

	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// All devices, 15 min: history plus live points.
	run("open page", chromedp.Navigate(base))
	waitJS(t, ctx, "live points", `window.pilake && window.pilake.updates >= 8 && window.pilake.status === 'online'`)
	waitJS(t, ctx, "both devices charted", `[...document.querySelectorAll('.card')].length === 2 &&
		[...document.querySelectorAll('.card')].every(c => c.classList.contains('has-data') && c.querySelectorAll('canvas').length >= 3 &&
		+c.dataset.points > 1000 && !c.querySelector('.now b').textContent.includes('–'))`)
	waitJS(t, ctx, "age shown", `[...document.querySelectorAll('.card .age')].every(a => /last point/.test(a.textContent))`)
	waitJS(t, ctx, "fresh points", `[...document.querySelectorAll('.card .age')].every(a => /just now|last point [0-3] s/.test(a.textContent))`)
	shoot(t, ctx, dir, "1-all-devices-15m.png")

	// One device.
	run("pick device", chromedp.SetValue(chromedp.CSS(`#device`), "pi-lab"),
		js(`document.querySelector('#device').dispatchEvent(new Event('change'))`))
	waitJS(t, ctx, "one device", `document.querySelectorAll('.card').length === 1 && document.querySelector('.card').dataset.device === 'pi-lab' &&
		document.querySelector('.card').classList.contains('has-data') && location.search.includes('device=pi-lab')`)

	// Range 1 min, and live points keep coming.
	before, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.pilake.updates`))
	if err != nil {
		t.Fatal(err)
	}
	run("range 1m", chromedp.Click(chromedp.CSS(`button[data-range="1m"]`)))
	waitJS(t, ctx, "1 min range", `document.querySelector('.ranges button.on').dataset.range === '1m' && location.search.includes('range=1m') &&
		+document.querySelector('.card').dataset.points > 50 && +document.querySelector('.card').dataset.points < 200`)
	waitJS(t, ctx, "more live points", fmt.Sprintf(`window.pilake.updates >= %d`, before+8))
	shoot(t, ctx, dir, "2-one-device-1m.png")

	// 24 h: decimated server-side.
	run("range 24h", chromedp.Click(chromedp.CSS(`button[data-range="24h"]`)))
	waitJS(t, ctx, "24 h range", `location.search.includes('range=24h') && document.querySelector('.card').classList.contains('has-data')`)

	// Custom range: live goes off.
	run("custom range", chromedp.Click(chromedp.CSS(`button[data-range="custom"]`)),
		js(`(() => { const to = new Date(Date.now() - 60e3), from = new Date(Date.now() - 600e3);
			const f = (d) => new Date(d.getTime() - d.getTimezoneOffset()*60e3).toISOString().slice(0, 19);
			document.querySelector('#from').value = f(from); document.querySelector('#to').value = f(to); })()`),
		chromedp.Click(chromedp.CSS(`#custom button[type=submit]`)))
	waitJS(t, ctx, "custom range", `location.search.includes('from=') && document.querySelector('#live').disabled &&
		window.pilake.status === 'paused' && +document.querySelector('.card').dataset.points > 500`)

	// Phone.
	run("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)), chromedp.Navigate(base+"?range=15m"))
	waitJS(t, ctx, "phone page", `document.querySelectorAll('.card.has-data').length === 2 && window.pilake.status === 'online' &&
		document.documentElement.scrollWidth <= window.innerWidth + 1`)
	waitJS(t, ctx, "fresh points", `[...document.querySelectorAll('.card .age')].every(a => /just now|last point [0-3] s/.test(a.textContent))`)
	shoot(t, ctx, dir, "3-phone.png")
	run("desktop", chromedp.EmulateViewport(1280, 900))

	// No data yet: an empty lake and a quiet broker.
	quiet, _ := startBroker(t)
	empty := startDashboard(t, "--lake", t.TempDir(), "--broker", quiet)
	run("empty", chromedp.Navigate(empty))
	waitJS(t, ctx, "no data yet", `!document.querySelector('#empty').hidden && document.querySelector('#empty').textContent.includes('No data yet') &&
		window.pilake.status === 'online'`)
	shoot(t, ctx, dir, "4-no-data-yet.png")

	// Source offline: the broker goes away.
	run("back", chromedp.Navigate(base))
	waitJS(t, ctx, "online again", `window.pilake.status === 'online' && document.querySelectorAll('.card.has-data').length === 2`)
	stopFeed()
	stopBroker()
	waitJS(t, ctx, "source offline", `window.pilake.status === 'offline' && document.querySelector('#banners').textContent.includes('Source offline')`)
	shoot(t, ctx, dir, "5-source-offline.png")
}

// A binary built before web/build.sh ran says so on the page.
func TestBrowserWithoutChartLibrary(t *testing.T) {
	static, err := fs.Sub(web.FS(), "static")
	if err != nil {
		t.Fatal(err)
	}
	assets := fstest.MapFS{}
	_ = fs.WalkDir(static, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := fs.ReadFile(static, p)
			assets["static/"+p] = &fstest.MapFile{Data: b}
		}
		return nil
	})
	assets["vendor/README.md"] = &fstest.MapFile{Data: []byte("empty")}
	l, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	writeHistory(t, l, []string{"pi-1"}, 2*time.Minute)
	hub := live.NewHub(16, nil)
	hub.SetStatus("online", "test", "")
	s := &Server{History: history.NewLake(l, 8), Hub: hub, SSE: &live.SSE{Hub: hub}, Assets: assets, MaxPoints: 1500}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	ctx := browser(t) // closed before the server: cleanups run last-in first-out
	dir := screenshotDir(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "missing-library banner", `document.querySelector('#banners').textContent.includes('Chart library missing') &&
		document.querySelector('#banners').textContent.includes('dashboard/web/build.sh') &&
		!!document.querySelector('.card .now b') && document.querySelector('.card .now b').textContent !== '–'`)
	shoot(t, ctx, dir, "6-no-chart-library.png")
}

// Beyond loopback the page is opened once with ?token=…; the cookie it gets
// then carries the data requests and the live stream.
func TestBrowserWithToken(t *testing.T) {
	if !web.HasChartLibrary() && !testenv.Required() {
		t.Skip("the chart library is missing: run dashboard/web/build.sh")
	}
	l, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	writeHistory(t, l, []string{"pi-1"}, 2*time.Minute)
	hub := live.NewHub(16, nil)
	hub.SetStatus("online", "test", "")
	s := &Server{History: history.NewLake(l, 8), Hub: hub, SSE: &live.SSE{Hub: hub}, Assets: web.FS(), MaxPoints: 1500,
		Auth: Auth{Token: "t0k3n-for-test"}}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/?token=t0k3n-for-test&range=15m")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "page with data over the cookie", `!location.search.includes('token') && window.pilake && window.pilake.loads >= 1 &&
		window.pilake.status === 'online' && document.querySelectorAll('.card.has-data').length === 1`)
	u := live.Update{Device: "pi-1", CaptureMS: float64(time.Now().UnixMilli())}
	if _, err := hub.Publish(u); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "live update over the cookie", `window.pilake.updates >= 1`)
}

// TestBrowserGaps: a device without pressure (the Azure simulator's) and one
// without humidity for a stretch (a BMP280): the page shows no current
// pressure ('–') and draws gaps where the lake holds nulls, not zeros; the
// other quantities are drawn whole.
func TestBrowserGaps(t *testing.T) {
	if !web.HasChartLibrary() {
		if testenv.Required() {
			t.Fatal("the chart library is missing: run dashboard/web/build.sh before the tests")
		}
		t.Skip("the chart library is missing: run dashboard/web/build.sh")
	}
	ctx := browser(t)
	lakeDir := t.TempDir()
	l, err := lake.NewLocal(lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	w := laketest.NewWriter(t, l)
	end := time.Now().Truncate(time.Second).Add(-2 * time.Second)
	var silver []schema.SilverRow
	var gold []schema.GoldRow
	nan := math.NaN()
	for ts := end.Add(-5 * time.Minute); ts.Before(end); ts = ts.Add(time.Second) {
		tc, h, p := sensorSignal(0, ts)
		hb := h
		if ts.Before(end.Add(-150 * time.Second)) {
			hb = nan // the BMP280's stretch
		}
		silver = append(silver, sqltest.Silver("pi-sim", ts.UnixMicro(), tc, h, nan), sqltest.Silver("pi-bmp", ts.UnixMicro(), tc, hb, p))
		gold = append(gold, sqltest.Gold("pi-sim", ts.UnixMicro(), 8, tc, h, nan), sqltest.Gold("pi-bmp", ts.UnixMicro(), 8, tc, hb, p))
	}
	w.Silver(silver...)
	w.Gold(gold...)
	broker, _ := startBroker(t)
	base := startDashboard(t, "--lake", lakeDir, "--broker", broker)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"?range=15m")); err != nil {
		t.Fatal(err)
	}
	card := func(dev string) string { return fmt.Sprintf(`document.querySelector('.card[data-device=%q]')`, dev) }
	waitJS(t, ctx, "both devices charted", `document.querySelectorAll('.card.has-data').length === 2 && `+
		card("pi-sim")+`.dataset.gapspress !== undefined && `+card("pi-bmp")+`.dataset.gapshum !== undefined`)
	waitJS(t, ctx, "no pressure: '–' and a gap over the whole range; temperature and humidity whole", card("pi-sim")+`.querySelector('.now .p b').textContent === '–' && `+
		card("pi-sim")+`.querySelector('.now .t b').textContent !== '–' && +`+card("pi-sim")+`.dataset.gapspress >= 290 && +`+
		card("pi-sim")+`.dataset.gapstemp === 0 && +`+card("pi-sim")+`.dataset.gapshum === 0`)
	waitJS(t, ctx, "no humidity for a stretch: a gap there; the newest humidity shown", card("pi-bmp")+`.querySelector('.now .h b').textContent !== '–' && +`+
		card("pi-bmp")+`.dataset.gapshum >= 140 && +`+card("pi-bmp")+`.dataset.gapshum <= 160 && +`+card("pi-bmp")+`.dataset.gapspress === 0`)
	shoot(t, ctx, screenshotDir(t), "6-gaps.png")
}
