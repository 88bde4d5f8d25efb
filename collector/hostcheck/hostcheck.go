// Package hostcheck refuses HTTP requests whose Host header is not one of
// the server's names, so that a web page cannot reach a local server (the
// dashboard, the collector's /metrics) through DNS rebinding.
package hostcheck

import (
	"net"
	"net/http"
	"strings"
)

// Allowed returns the host names a server listening on listen answers to:
// the loopback names, the listen host if it is specific, and extra. An
// empty result means any host (a server on an unspecified address, such as
// 0.0.0.0, without extra names); callers should then require
// authentication.
func Allowed(listen string, extra []string) []string {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		host = listen
	}
	var out []string
	for _, e := range extra {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, strings.ToLower(e))
		}
	}
	ip := net.ParseIP(host)
	if (host == "" || (ip != nil && ip.IsUnspecified())) && len(out) == 0 {
		return nil
	}
	out = append(out, "localhost", "127.0.0.1", "::1")
	if host != "" && (ip == nil || !ip.IsUnspecified()) {
		out = append(out, strings.ToLower(host))
	}
	return out
}

// Handler serves h only for requests whose Host (without its port) is in
// allowed, others get 421 Misdirected Request; onRefused (if set) is called
// for each refusal. With an empty allowed every host is served.
func Handler(allowed []string, h http.Handler, onRefused func()) http.Handler {
	if len(allowed) == 0 {
		return h
	}
	set := map[string]bool{}
	for _, a := range allowed {
		set[a] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
		if !set[host] {
			if onRefused != nil {
				onRefused()
			}
			http.Error(w, "unknown host", http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// NoListing serves files from h but answers 404 for directory paths, so
// that a file server never lists a directory.
func NoListing(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}
