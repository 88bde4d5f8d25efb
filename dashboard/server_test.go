package main

import (
	"bytes"
	"context"
	"database/sql/driver"
	"encoding/json"
	"io"
	stdlog "log"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/hostcheck"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/dashboard/history"
	"github.com/pilake/pilake/dashboard/internal/laketest"
	"github.com/pilake/pilake/dashboard/internal/sqltest"
	"github.com/pilake/pilake/dashboard/live"
	"github.com/pilake/pilake/dashboard/series"
	"github.com/pilake/pilake/dashboard/web"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "defaults", check: func(t *testing.T, c Config) {
			if c.Listen != "127.0.0.1:8050" || c.Lake != "./lake" || c.Broker != "tcp://127.0.0.1:1883" || c.Source != "lake" || c.GoldN != 8 {
				t.Errorf("defaults %+v", c)
			}
		}},
		{name: "env sets flags", env: map[string]string{"PILAKE_LISTEN": "[::1]:9000", "PILAKE_LAKE": "/x"}, check: func(t *testing.T, c Config) {
			if c.Listen != "[::1]:9000" || c.Lake != "/x" {
				t.Errorf("%+v", c)
			}
		}},
		{name: "beyond loopback needs auth", args: []string{"--listen", "0.0.0.0:8050"}, wantErr: "PILAKE_DASHBOARD_TOKEN"},
		{name: "all interfaces needs auth", args: []string{"--listen", ":8050"}, wantErr: "not a loopback"},
		{name: "beyond loopback with token", args: []string{"--listen", "0.0.0.0:8050"}, env: map[string]string{"PILAKE_DASHBOARD_TOKEN": "s3cret"}},
		{name: "beyond loopback with basic auth", args: []string{"--listen", "192.0.2.1:8050"},
			env: map[string]string{"PILAKE_DASHBOARD_USER": "me", "PILAKE_DASHBOARD_PASSWORD": "pw"}},
		{name: "user without password", env: map[string]string{"PILAKE_DASHBOARD_USER": "me"}, wantErr: "both"},
		{name: "databricks needs its settings", args: []string{"--source", "databricks"}, wantErr: "SERVER_HOSTNAME, HTTP_PATH, ACCESS_TOKEN"},
		{name: "databricks with prefixed names", args: []string{"--source", "databricks"},
			env: map[string]string{"DATABRICKS_SERVER_HOSTNAME": "h", "DATABRICKS_HTTP_PATH": "/p", "DATABRICKS_ACCESS_TOKEN": "dapi1"},
			check: func(t *testing.T, c Config) {
				if c.Databricks.Host != "h" || c.Databricks.Token.Reveal() != "dapi1" {
					t.Errorf("%+v", c.Databricks)
				}
			}},
		{name: "bad table name", args: []string{"--source", "databricks", "--sql-gold-table", "gold;drop"},
			env: map[string]string{"SERVER_HOSTNAME": "h", "HTTP_PATH": "/p", "ACCESS_TOKEN": "t"}, wantErr: "table name"},
		{name: "bad source", args: []string{"--source", "csv"}, wantErr: "want lake or databricks"},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(tc.args, envOf(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func TestRunRefusesPublicAddressWithoutAuth(t *testing.T) {
	err := run(context.Background(), []string{"--listen", "0.0.0.0:0"}, envOf(nil), io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Fatalf("err %v", err)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := Secret("dapi-very-secret")
	var buf bytes.Buffer
	log := slogJSON(&buf)
	log.Info("x", "token", s, "cfg", Databricks{Host: "h", Token: s})
	b, _ := json.Marshal(map[string]any{"t": s})
	out := buf.String() + string(b) + fmtAll(s)
	if strings.Contains(out, "very-secret") {
		t.Errorf("secret leaked: %s", out)
	}
	if s.Reveal() != "dapi-very-secret" {
		t.Error("Reveal")
	}
}

func TestDatabricksDSN(t *testing.T) {
	dsn := databricksDSN(Databricks{Host: "https://adb-1.azuredatabricks.net/", HTTPPath: "sql/1.0/warehouses/abc", Token: "dapi/+x"})
	want := "token:dapi%2F+x@adb-1.azuredatabricks.net:443/sql/1.0/warehouses/abc?enableTelemetry=false"
	if dsn != want {
		t.Errorf("dsn %q, want %q", dsn, want)
	}
	// a service principal: the driver's OAuth M2M, no token in the DSN
	d := Databricks{Host: "adb-1.azuredatabricks.net", HTTPPath: "/sql/1.0/warehouses/abc", ClientID: "sp-id", ClientSecret: "sp/secret"}
	dsn = databricksDSN(d)
	want = "adb-1.azuredatabricks.net:443/sql/1.0/warehouses/abc?authType=OauthM2M&clientID=sp-id&clientSecret=sp%2Fsecret&enableTelemetry=false"
	if dsn != want {
		t.Errorf("m2m dsn %q, want %q", dsn, want)
	}
	// the driver takes it (it refuses an M2M DSN without both id and secret)
	db, err := openDatabricks(d)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Driver().(driver.DriverContext).OpenConnector(dsn); err != nil {
		t.Errorf("driver refuses the M2M DSN: %v", err)
	}
	if _, err := db.Driver().(driver.DriverContext).OpenConnector(databricksDSN(Databricks{Host: "h", HTTPPath: "/p", ClientID: "sp-id"})); err == nil {
		t.Error("driver accepts an M2M DSN without a secret: the test above proves nothing")
	}
}

func TestDatabricksAuthConfig(t *testing.T) {
	base := map[string]string{"SERVER_HOSTNAME": "h", "HTTP_PATH": "/p"}
	with := func(kv ...string) func(string) (string, bool) {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return envOf(m)
	}
	for _, tc := range []struct {
		env     func(string) (string, bool)
		args    []string
		wantErr string
	}{
		{env: with("DATABRICKS_CLIENT_ID", "id", "DATABRICKS_CLIENT_SECRET", "s")},
		{env: with("CLIENT_ID", "id"), wantErr: "CLIENT_ID and CLIENT_SECRET"},
		{env: with("ACCESS_TOKEN", "t", "CLIENT_ID", "id", "CLIENT_SECRET", "s"), wantErr: "not both"},
		{env: with("ACCESS_TOKEN", "t"), args: []string{"--sql-poll-hours", "7-19"}, wantErr: "--sql-poll-hours"},
		{env: with("ACCESS_TOKEN", "t"), args: []string{"--sql-poll-hours", "07:00-19:00", "--sql-max-rows", "1000"}},
		{env: with("ACCESS_TOKEN", "t"), args: []string{"--sql-gold-table", "delta.`abfss://lake@a.dfs.core.windows.net/gold`"}},
	} {
		_, err := loadConfig(append([]string{"--source", "databricks"}, tc.args...), tc.env)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("args %v: err %v, want %q", tc.args, err, tc.wantErr)
		}
	}
}

// testServer serves a dashboard over a real Delta lake.
func testServer(t *testing.T, auth Auth) (*httptest.Server, *live.Hub, *laketest.Writer) {
	t.Helper()
	l, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w := laketest.NewWriter(t, l)
	hub := live.NewHub(64, nil)
	s := &Server{History: history.NewLake(l, 8), Hub: hub, SSE: &live.SSE{Hub: hub}, Assets: web.FS(), MaxPoints: 1500, Auth: auth}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv, hub, w
}

func get(t *testing.T, c *http.Client, url string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestSeriesEndpoint(t *testing.T) {
	srv, hub, w := testServer(t, Auth{})
	now := time.Now().Truncate(time.Second)
	ws := now.Add(-30 * time.Second).UnixMicro()
	w.Silver(sqltest.Silver("dev-a", ws, 21.5, 40.25, 101325.5), sqltest.Silver("dev-b", ws, 22, 41, 101000))
	w.Gold(sqltest.Gold("dev-a", ws, 8, 21.25, 40.5, 101300), sqltest.Gold("dev-a", ws, 60, 0, 0, 0))
	if _, err := hub.Publish(live.Update{Device: "dev-c", CaptureMS: 1}); err != nil {
		t.Fatal(err)
	}

	code, body, hdr := get(t, srv.Client(), srv.URL+"/api/series?device=all&range=1m")
	if code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d %s", code, body)
	}
	var resp struct {
		Series []struct {
			Device string
			Silver map[string][]float64
			Gold   map[string][]float64
		}
		LiveSeq uint64 `json:"live_seq"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Series) != 2 || resp.Series[0].Device != "dev-a" || resp.Series[1].Device != "dev-b" || resp.LiveSeq != 1 {
		t.Fatalf("body %s", body)
	}
	a := resp.Series[0]
	wantMS := float64(ws / 1000)
	if a.Silver["t"][0] != wantMS || a.Silver["temp_c"][0] != 21.5 || a.Silver["humidity_rh"][0] != 40.25 || a.Silver["pressure_pa"][0] != 101325.5 {
		t.Errorf("dev-a silver %v", a.Silver)
	}
	if len(a.Gold["t"]) != 1 || a.Gold["temp_c"][0] != 21.25 {
		t.Errorf("dev-a gold %v (want n=8 only)", a.Gold)
	}
	if b := resp.Series[1]; len(b.Gold["t"]) != 0 || b.Gold["t"] == nil {
		t.Errorf("dev-b gold %v, want an empty (not null) column", b.Gold)
	}

	code, body, _ = get(t, srv.Client(), srv.URL+"/api/series?device=dev-b&from="+itoa(ws/1000)+"&to="+itoa(ws/1000+1))
	if code != 200 || !strings.Contains(body, `"device":"dev-b"`) || strings.Contains(body, "dev-a") {
		t.Errorf("one device, custom range: %d %s", code, body)
	}
	code, body, _ = get(t, srv.Client(), srv.URL+"/api/series?range=7y")
	if code != 400 || !strings.Contains(body, `"error"`) {
		t.Errorf("bad range: %d %s", code, body)
	}
	code, body, _ = get(t, srv.Client(), srv.URL+"/api/devices")
	if code != 200 || !strings.Contains(body, `"id":"dev-a"`) || !strings.Contains(body, `"id":"dev-c"`) {
		t.Errorf("devices: %d %s", code, body)
	}
	code, body, _ = get(t, srv.Client(), srv.URL+"/healthz")
	if code != 200 || !strings.Contains(body, `"ok":true`) {
		t.Errorf("healthz: %d %s", code, body)
	}
	code, body, hdr = get(t, srv.Client(), srv.URL+"/")
	if code != 200 || !strings.Contains(body, "static/app.js") || hdr.Get("Content-Security-Policy") == "" {
		t.Errorf("page: %d", code)
	}
	code, _, _ = get(t, srv.Client(), srv.URL+"/static/app.js")
	if code != 200 {
		t.Errorf("app.js: %d", code)
	}
}

func itoa(v int64) string { b, _ := json.Marshal(v); return string(b) }

func TestAuth(t *testing.T) {
	srv, _, _ := testServer(t, Auth{Token: "tok-123", User: "ann", Password: "pw"})
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		name string
		path string
		hdr  []string
		want int
	}{
		{"no credentials", "/api/devices", nil, 401},
		{"page without credentials", "/", nil, 401},
		{"wrong bearer", "/api/devices", []string{"Authorization", "Bearer nope"}, 401},
		{"bearer", "/api/devices", []string{"Authorization", "Bearer tok-123"}, 200},
		{"cookie", "/api/devices", []string{"Cookie", "pilake_token=tok-123"}, 200},
		{"wrong cookie", "/api/devices", []string{"Cookie", "pilake_token=tok-124"}, 401},
		{"query token sets cookie and redirects", "/?token=tok-123", nil, 303},
		{"basic", "/api/devices", []string{"Authorization", "Basic YW5uOnB3"}, 200},       // ann:pw
		{"basic wrong", "/api/devices", []string{"Authorization", "Basic YW5uOnB4"}, 401}, // ann:px
		{"healthz is open", "/healthz", nil, 200},
		{"live needs credentials", "/api/live", nil, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, hdr := get(t, noRedirect, srv.URL+tc.path, tc.hdr...)
			if code != tc.want {
				t.Errorf("status %d, want %d", code, tc.want)
			}
			if tc.want == 303 {
				if c := hdr.Get("Set-Cookie"); !strings.Contains(c, "pilake_token=tok-123") || !strings.Contains(c, "HttpOnly") {
					t.Errorf("cookie %q", c)
				}
				if loc := hdr.Get("Location"); strings.Contains(loc, "tok-123") {
					t.Errorf("redirect keeps the token in the URL: %s", loc)
				}
			}
		})
	}
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The Databricks token reaches the driver and nothing else: not the logs, not
// a response, not the live stream, even when the warehouse fails. (Databricks
// itself cannot run here: the "warehouse" is a TLS server the driver cannot
// trust, so every query fails the way an unreachable warehouse does.)
func TestDatabricksTokenNeverLeaks(t *testing.T) {
	const token = "dapi0123456789abcdef-SECRET"
	warehouse := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	warehouse.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // the driver's failed TLS handshakes are the point
	warehouse.StartTLS()
	t.Cleanup(warehouse.Close)
	env := map[string]string{
		"SERVER_HOSTNAME": strings.TrimPrefix(warehouse.URL, "https://"),
		"HTTP_PATH":       "/sql/1.0/warehouses/test",
		"ACCESS_TOKEN":    token,
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--source", "databricks", "--sql-poll", "50ms", "--sql-timeout", "500ms", "--log-level", "debug"},
			envOf(env), logs, ready)
	}()
	var base string
	select {
	case base = <-ready:
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	var seen strings.Builder
	// the live stream until it reports the failing source
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"api/live", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for !strings.Contains(seen.String(), `"live":"offline"`) {
		n, err := resp.Body.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			t.Fatalf("live stream ended before reporting the source offline: %v\n%s", err, seen.String())
		}
	}
	resp.Body.Close()
	for _, p := range []string{"", "api/series?range=1h", "api/devices", "healthz", "static/app.js"} {
		_, body, hdr := get(t, http.DefaultClient, base+p)
		seen.WriteString(body)
		for k, v := range hdr {
			seen.WriteString(k + ": " + strings.Join(v, ",") + "\n")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	for what, s := range map[string]string{"responses": seen.String(), "logs": logs.String()} {
		if strings.Contains(s, token) || strings.Contains(s, "SECRET") {
			t.Errorf("token leaked into %s:\n%s", what, s)
		}
	}
	if !strings.Contains(logs.String(), `"token":"[redacted]"`) {
		t.Errorf("logs do not show the token redacted:\n%s", logs.String())
	}
}

func TestSeriesMergesRecentLive(t *testing.T) {
	srv, hub, w := testServer(t, Auth{})
	ws := time.Now().Add(-20 * time.Second).Truncate(time.Second).UnixMicro()
	ms := ws / 1000
	w.Silver(sqltest.Silver("dev-a", ws, 20, 40, 101000)) // the lake's newest dev-a window
	pub := func(dev string, silverT, goldT []int64, temp float64) {
		u := live.Update{Device: dev, CaptureMS: 1, Silver: series.Empty(), Gold: series.Empty()}
		for _, x := range silverT {
			u.Silver.Append(x, temp, 41, 101001)
		}
		for _, x := range goldT {
			u.Gold.Append(x, temp, 41, 101001)
		}
		if _, err := hub.Publish(u); err != nil {
			t.Fatal(err)
		}
	}
	pub("dev-a", []int64{ms, ms + 1000}, []int64{ms}, 21)    // ms is already in the lake: silver skipped
	pub("dev-a", []int64{ms + 1000}, []int64{ms + 1000}, 22) // a newer provisional value of ms+1000
	pub("dev-z", []int64{ms}, nil, 23)                       // a device the lake has not seen yet
	pub("dev-z", []int64{ms - 3600e3}, nil, 24)              // outside the range
	_, body, _ := get(t, srv.Client(), srv.URL+"/api/series?range=1m")
	var resp struct{ Series []series.Series }
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Series) != 2 {
		t.Fatalf("series %s", body)
	}
	a, z := resp.Series[0], resp.Series[1]
	if !reflect.DeepEqual(a.Silver.T, []int64{ms, ms + 1000}) || !reflect.DeepEqual(a.Silver.TempC, []float64{20, 22}) {
		t.Errorf("dev-a silver %+v", a.Silver)
	}
	if !reflect.DeepEqual(a.Gold.T, []int64{ms, ms + 1000}) || !reflect.DeepEqual(a.Gold.TempC, []float64{21, 22}) {
		t.Errorf("dev-a gold %+v", a.Gold)
	}
	if z.Device != "dev-z" || !reflect.DeepEqual(z.Silver.T, []int64{ms}) || z.Gold.T == nil {
		t.Errorf("dev-z %+v", z)
	}
}

func TestExampleConfigParses(t *testing.T) {
	c, err := loadConfig([]string{"--config", "dashboard.conf.example"}, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8050" || c.Ring != 16384 || c.SQLTimeout != 30*time.Second {
		t.Errorf("%+v", c)
	}
}

// TestHardening: issue 16 item 13. Unknown Host headers are refused (DNS
// rebinding), a span that overflowed the 31-day check is refused, and the
// asset directories are not listed.
func TestHardening(t *testing.T) {
	l, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hub := live.NewHub(64, nil)
	s := &Server{History: history.NewLake(l, 8), Hub: hub, SSE: &live.SSE{Hub: hub}, Assets: web.FS(), MaxPoints: 1500,
		AllowedHosts: hostcheck.Allowed("127.0.0.1:8050", []string{"dash.example.com"})}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for _, tc := range []struct {
		path, host string
		want       int
	}{
		{"/api/devices", "", 200},
		{"/api/devices", "dash.example.com", 200},
		{"/api/devices", "attacker.example", 421},
		{"/", "rebound.attacker.example:8050", 421},
		{"/api/series?from=0&to=18446744073710", "", 400},
		{"/api/series?from=1&to=9223372036854775807", "", 400},
		{"/static/", "", 404},
		{"/vendor/", "", 404},
	} {
		req, _ := http.NewRequest("GET", srv.URL+tc.path, nil)
		if tc.host != "" {
			req.Host = tc.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s (Host %q): %d, want %d", tc.path, tc.host, resp.StatusCode, tc.want)
		}
	}
	if n := s.HostRefused.Load(); n != 2 {
		t.Errorf("host refusals %d, want 2", n)
	}
}
