package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/pilake/pilake/collector/hostcheck"

	"github.com/pilake/pilake/dashboard/history"
	"github.com/pilake/pilake/dashboard/live"
	"github.com/pilake/pilake/dashboard/series"
	"github.com/pilake/pilake/internal/clock"
)

// Server is the dashboard's HTTP side.
type Server struct {
	History   history.Source
	Hub       *live.Hub
	SSE       *live.SSE
	Assets    fs.FS // static/… and vendor/…
	MaxPoints int
	Auth      Auth
	Clock     clock.Clock // the time ranges end at [clock.Real]
	Logger    *slog.Logger
	// AllowedHosts are the Host header names served (hostcheck.Allowed);
	// empty: any.
	AllowedHosts []string
	// QueryTimeout bounds one history read (default 30 s).
	QueryTimeout time.Duration
	// HostRefused counts requests refused for their Host header.
	HostRefused atomic.Uint64
}

// Handler returns the routes, behind authentication when it is configured.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/series", s.series)
	mux.HandleFunc("GET /api/devices", s.devices)
	mux.Handle("GET /api/live", s.SSE)
	files := hostcheck.NoListing(http.FileServerFS(s.Assets))
	mux.Handle("GET /static/", files)
	mux.Handle("GET /vendor/", files)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, s.Assets, "static/index.html")
	})
	protected := s.Auth.wrap(secureHeaders(mux))
	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", s.healthz) // no secrets in it; probes need no credentials
	root.Handle("/", hostcheck.Handler(s.AllowedHosts, protected, func() {
		if n := s.HostRefused.Add(1); n&(n-1) == 0 { // log the 1st, 2nd, 4th, 8th, ... refusal
			s.log().Warn("requests refused for their Host header (not in --allowed-hosts)", "refused_total", n)
		}
	}))
	return root
}

func secureHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'")
		h.ServeHTTP(w, r)
	})
}

func (s *Server) now() time.Time {
	if s.Clock != nil {
		return s.Clock.Now()
	}
	return clock.Real.Now()
}

func (s *Server) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// seriesResponse is the body of GET /api/series.
type seriesResponse struct {
	Series []series.Series `json:"series"`
	FromMS int64           `json:"from"`
	ToMS   int64           `json:"to"`
	// LiveSeq is the live feed's newest update number when the history was
	// read: the page asks /api/live for the updates after it, so nothing
	// falls between history and live.
	LiveSeq uint64 `json:"live_seq"`
}

func (s *Server) series(w http.ResponseWriter, r *http.Request) {
	q, err := history.ParseQuery(r.URL.Query(), s.now(), s.MaxPoints)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	seq := s.Hub.Seq() // before reading: an update racing the read is sent again, not lost
	ctx, cancel := s.timeout(r)
	defer cancel()
	out, err := s.History.Series(ctx, q)
	if err != nil {
		s.log().Warn("reading history", "device", q.Device, "from_ms", q.FromMS, "to_ms", q.ToMS, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "history source unavailable: " + publicError(err)})
		return
	}
	out = mergeRecent(out, s.Hub.Recent(q.Device), q)
	writeSeries(w, r, seriesResponse{Series: out, FromMS: q.FromMS, ToMS: q.ToMS, LiveSeq: seq})
}

// writeSeries writes the history response in compact JSON (the shape
// encoding/json gives seriesResponse, values rounded as series.AppendFloat
// says), gzipped when the client takes it: the all-devices view of 100
// cards is then tens of kilobytes, not megabytes.
func writeSeries(w http.ResponseWriter, r *http.Request, resp seriesResponse) {
	b := make([]byte, 0, 64<<10)
	b = append(b, `{"series":[`...)
	for i := range resp.Series {
		sr := &resp.Series[i]
		if i > 0 {
			b = append(b, ',')
		}
		dev, _ := json.Marshal(sr.Device) // a string always encodes
		b = append(b, `{"device":`...)
		b = append(b, dev...)
		b = append(b, `,"silver":`...)
		b = sr.Silver.AppendJSON(b)
		b = append(b, `,"gold":`...)
		b = sr.Gold.AppendJSON(b)
		b = append(b, '}')
	}
	b = append(b, `],"from":`...)
	b = strconv.AppendInt(b, resp.FromMS, 10)
	b = append(b, `,"to":`...)
	b = strconv.AppendInt(b, resp.ToMS, 10)
	b = append(b, `,"live_seq":`...)
	b = strconv.AppendUint(b, resp.LiveSeq, 10)
	b = append(b, "}\n"...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Add("Vary", "Accept-Encoding")
	if len(b) < 1400 || !acceptsGzip(r) {
		_, _ = w.Write(b)
		return
	}
	h.Set("Content-Encoding", "gzip")
	zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed) // a valid level: no error
	_, _ = zw.Write(b)
	_ = zw.Close()
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(q, " ", "") != "q=0" {
			return true
		}
	}
	return false
}

// mergeRecent appends to each device's history the live points newer than
// its newest stored one. The lake holds a window only once the watermark has
// passed it and the stage has committed (gold: up to a minute), so without
// this a page opened now would show a gap until that time.
func mergeRecent(hist []series.Series, recent []*live.Update, q history.Query) []series.Series {
	idx := map[string]int{}
	for i := range hist {
		idx[hist[i].Device] = i
	}
	type tails struct {
		lastSilver, lastGold int64
		silver, gold         series.Columns
	}
	add := map[string]*tails{}
	last := func(c series.Columns) int64 {
		if c.Len() == 0 {
			return q.FromMS - 1
		}
		return c.T[c.Len()-1]
	}
	for _, u := range recent {
		tl, ok := add[u.Device]
		if !ok {
			tl = &tails{lastSilver: q.FromMS - 1, lastGold: q.FromMS - 1}
			if i, ok := idx[u.Device]; ok {
				tl.lastSilver, tl.lastGold = last(hist[i].Silver), last(hist[i].Gold)
			}
			add[u.Device] = tl
		}
		for _, p := range []struct {
			src  *series.Columns
			dst  *series.Columns
			last int64
		}{{&u.Silver, &tl.silver, tl.lastSilver}, {&u.Gold, &tl.gold, tl.lastGold}} {
			for k, t := range p.src.T {
				if t > p.last && t < q.ToMS {
					p.dst.AppendPoint(p.src.At(k))
				}
			}
		}
	}
	for dev, tl := range add {
		if tl.silver.Len() == 0 && tl.gold.Len() == 0 {
			continue
		}
		tl.silver.Sort() // a later provisional value of a window replaces an earlier one
		tl.gold.Sort()
		i, ok := idx[dev]
		if !ok {
			hist = append(hist, series.Series{Device: dev, Silver: series.Empty(), Gold: series.Empty()})
			i = len(hist) - 1
			idx[dev] = i
		}
		s := &hist[i]
		for _, p := range []struct{ dst, src *series.Columns }{{&s.Silver, &tl.silver}, {&s.Gold, &tl.gold}} {
			for k := range p.src.T {
				p.dst.AppendPoint(p.src.At(k))
			}
		}
	}
	sort.Slice(hist, func(i, j int) bool { return hist[i].Device < hist[j].Device })
	if hist == nil {
		hist = []series.Series{}
	}
	return hist
}

type deviceInfo struct {
	ID string `json:"id"`
	// LastCaptureMS is the newest capture seen on the live feed (0: none since start).
	LastCaptureMS int64 `json:"last_capture_ms"`
}

func (s *Server) devices(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.timeout(r)
	defer cancel()
	seen := s.Hub.Devices()
	ids, err := s.History.Devices(ctx)
	resp := map[string]any{"live": s.Hub.Status()}
	if err != nil {
		s.log().Warn("listing devices", "err", err)
		resp["error"] = "history source unavailable: " + publicError(err)
	}
	set := map[string]bool{}
	for _, d := range ids {
		set[d] = true
	}
	for d := range seen {
		set[d] = true
	}
	list := make([]deviceInfo, 0, len(set))
	for d := range set {
		list = append(list, deviceInfo{ID: d, LastCaptureMS: seen[d]})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	resp["devices"] = list
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	st := s.Hub.Status()
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "live": st.Live, "last_update_ms": st.LastUpdateMS,
		// What the dashboard's limits refused (it has no /metrics).
		"limited": map[string]uint64{"ring_evicted": s.Hub.Evicted(), "host_refused": s.HostRefused.Load()}})
}

func (s *Server) timeout(r *http.Request) (context.Context, context.CancelFunc) {
	d := s.QueryTimeout
	if d <= 0 {
		d = 30 * time.Second
	}
	return context.WithTimeout(r.Context(), d)
}

// publicError is what a browser may see of an error: its text, with anything
// that looks like a credential cut out (errors never carry the Databricks
// token, but a driver's message could quote a DSN).
func publicError(err error) string {
	msg := err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	for _, marker := range []string{"token:", "dapi", "Bearer ", "AccountKey=", "sig="} {
		if i := strings.Index(msg, marker); i >= 0 {
			msg = msg[:i] + "[redacted]"
		}
	}
	return msg
}

// wrap requires the token (Authorization: Bearer, the pilake_token cookie, or
// ?token= which also sets the cookie) or basic-auth credentials, when set.
func (a Auth) wrap(h http.Handler) http.Handler {
	if !a.Enabled() {
		return h
	}
	tokenSum := sha256.Sum256([]byte(a.Token.Reveal()))
	userSum := sha256.Sum256([]byte(a.User))
	passSum := sha256.Sum256([]byte(a.Password.Reveal()))
	eq := func(got string, want [32]byte) bool {
		g := sha256.Sum256([]byte(got))
		return subtle.ConstantTimeCompare(g[:], want[:]) == 1
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.Token != "" {
			if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && eq(v, tokenSum) {
				h.ServeHTTP(w, r)
				return
			}
			if c, err := r.Cookie("pilake_token"); err == nil && eq(c.Value, tokenSum) {
				h.ServeHTTP(w, r)
				return
			}
			if v := r.URL.Query().Get("token"); v != "" && eq(v, tokenSum) {
				http.SetCookie(w, &http.Cookie{Name: "pilake_token", Value: v, Path: "/", HttpOnly: true,
					SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
				u := *r.URL
				qv := u.Query()
				qv.Del("token")
				u.RawQuery = qv.Encode()
				http.Redirect(w, r, u.String(), http.StatusSeeOther)
				return
			}
		}
		if a.User != "" {
			if u, p, ok := r.BasicAuth(); ok && eq(u, userSum) && eq(p, passSum) {
				h.ServeHTTP(w, r)
				return
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="pilake dashboard", charset="UTF-8"`)
		}
		http.Error(w, "unauthorized: open the dashboard with ?token=… or your user name and password", http.StatusUnauthorized)
	})
}
