package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// TLSOptions configure the broker's TLS listener. The files are read again
// when they change (checked at most once a second, at a handshake), so a
// renewed certificate or CA bundle takes effect without a restart.
type TLSOptions struct {
	// CertFile and KeyFile are the server's PEM certificate chain and key.
	CertFile, KeyFile string
	// ClientCAFile, if set, is a PEM bundle of CAs whose client certificates
	// authenticate devices (mutual TLS). A client without a certificate may
	// still authenticate with a token.
	ClientCAFile string
}

// tlsFiles serves the current certificate and client CA pool, reloading
// them when their files change. A reload that fails keeps the previous
// pair (and logs), so a half-written renewal does not take the listener down.
type tlsFiles struct {
	opts TLSOptions
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	checked time.Time
	stamp   string // modification times and sizes of the files loaded
	cert    *tls.Certificate
	pool    *x509.CertPool
	reloads int
}

func newTLSFiles(o TLSOptions, log *slog.Logger) (*tlsFiles, error) {
	if o.CertFile == "" || o.KeyFile == "" {
		return nil, errors.New("TLS needs a certificate and a key file")
	}
	f := &tlsFiles{opts: o, log: log, now: time.Now}
	if err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

func fileStamp(names ...string) string {
	s := ""
	for _, n := range names {
		if n == "" {
			continue
		}
		if fi, err := os.Stat(n); err == nil {
			s += fmt.Sprintf("%s:%d:%d;", n, fi.ModTime().UnixNano(), fi.Size())
		}
	}
	return s
}

// load reads the files; f.mu is held (or f is not shared yet).
func (f *tlsFiles) load() error {
	stamp := fileStamp(f.opts.CertFile, f.opts.KeyFile, f.opts.ClientCAFile)
	cert, err := tls.LoadX509KeyPair(f.opts.CertFile, f.opts.KeyFile)
	if err != nil {
		return fmt.Errorf("loading TLS certificate: %w", err)
	}
	var pool *x509.CertPool
	if f.opts.ClientCAFile != "" {
		pem, err := os.ReadFile(f.opts.ClientCAFile)
		if err != nil {
			return fmt.Errorf("reading client CA file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("client CA file %s: no PEM certificates", f.opts.ClientCAFile)
		}
	}
	f.cert, f.pool, f.stamp = &cert, pool, stamp
	return nil
}

// refresh reloads the files if they changed since the last check.
func (f *tlsFiles) refresh() {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if now.Sub(f.checked) < time.Second {
		return
	}
	f.checked = now
	if fileStamp(f.opts.CertFile, f.opts.KeyFile, f.opts.ClientCAFile) == f.stamp {
		return
	}
	if err := f.load(); err != nil {
		f.log.Error("reloading TLS files failed; keeping the previous ones", "err", err)
		return
	}
	f.reloads++
	f.log.Info("TLS certificate reloaded", "cert", f.opts.CertFile)
}

// config returns the listener's TLS configuration: TLS 1.2 or later, the
// current certificate, and client certificates verified against the current
// CA pool when one is configured.
func (f *tlsFiles) config() *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		f.refresh()
		f.mu.Lock()
		cert, pool := f.cert, f.pool
		f.mu.Unlock()
		c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}}
		if pool != nil {
			c.ClientCAs = pool
			c.ClientAuth = tls.VerifyClientCertIfGiven
		}
		return c, nil
	}
	return base
}
