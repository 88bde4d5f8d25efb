package hostcheck

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/fstest"
)

func TestHandler(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})
	refused := 0
	h := Handler(Allowed("127.0.0.1:8050", []string{"dash.example.com"}), ok, func() { refused++ })
	for host, want := range map[string]int{
		"127.0.0.1:8050": 200, "localhost:8050": 200, "[::1]:8050": 200, "LOCALHOST": 200,
		"dash.example.com": 200, "dash.example.com.:443": 200,
		"evil.example:8050": 421, "": 421, "127.0.0.1.evil.example": 421,
	} {
		r := httptest.NewRequest("GET", "/metrics", nil)
		r.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Host %q: %d, want %d", host, w.Code, want)
		}
	}
	if refused != 3 {
		t.Errorf("refused %d, want 3", refused)
	}
	if a := Allowed("0.0.0.0:8050", nil); a != nil {
		t.Errorf("unspecified address without names: %v, want any", a)
	}
	if a := Allowed(":8050", []string{"x.example"}); len(a) == 0 {
		t.Error("names given but none allowed")
	}
}

func TestNoListing(t *testing.T) {
	fsys := fstest.MapFS{"static/app.js": {Data: []byte("x")}, "static/sub/a.css": {Data: []byte("y")}}
	h := NoListing(http.FileServerFS(fsys))
	for path, want := range map[string]int{"/static/app.js": 200, "/static/": 404, "/static/sub/": 404, "/static/sub": 404} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != want && !(path == "/static/sub" && w.Code == 301) {
			t.Errorf("%s: %d, want %d", path, w.Code, want)
		}
	}
}
