// Package redact makes untrusted or secret-bearing strings safe to log:
// Clean truncates and escapes text from the network, URL and Error remove
// credentials (user info, and query values such as an Azure SAS signature)
// from URLs.
package redact

import (
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Clean makes s safe to log: at most max bytes of it (then "…(N bytes)"),
// with control characters, bidirectional-formatting characters (U+202E and
// friends) and invalid UTF-8 escaped as \xNN or \uNNNN.
func Clean(s string, max int) string {
	if len(s) <= max && !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if b.Len() >= max {
			fmt.Fprintf(&b, "…(%d bytes)", len(s))
			break
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0:
			fmt.Fprintf(&b, `\x%02x`, r)
		case isFormat(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n <= 1) || r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || isFormat(r) {
			return true
		}
		i += n
	}
	return false
}

// isFormat: bidirectional controls and other invisible formatting characters.
func isFormat(r rune) bool {
	return r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 || r >= 0x200b && r <= 0x200f ||
		r == 0x061c || r == 0xfeff || r == 0x2028 || r == 0x2029
}

// secretParams are query parameters whose values are credentials: Azure SAS
// (sig), and common token names.
var secretParams = map[string]bool{"sig": true, "signature": true, "password": true, "token": true,
	"access_token": true, "sas": true, "key": true, "secret": true, "x-amz-signature": true}

// URL returns raw without credentials: the user info's password (or the
// whole user info) and the values of secret query parameters are replaced
// by "REDACTED". A string that does not parse is returned with anything
// that looks like user info or a signature removed.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return String(raw)
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "REDACTED")
		}
	}
	if u.RawQuery != "" {
		u.RawQuery = redactQuery(u.RawQuery)
	}
	return u.String()
}

func redactQuery(q string) string {
	parts := strings.Split(q, "&")
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		if ok && secretParams[strings.ToLower(k)] {
			parts[i] = k + "=REDACTED"
		}
	}
	return strings.Join(parts, "&")
}

var (
	userInfoRE = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s"']*:[^/@\s"']*@`)
	secretRE   = regexp.MustCompile(`(?i)\b(sig|signature|password|token|access_token|sas|secret|accountkey|sharedaccesskey)=[^&\s"';]+`)
)

// String removes credentials from URLs and key=value secrets (sig=,
// AccountKey=, SharedAccessKey=, ...) anywhere in s, such as in an error
// message that quotes a request URL or a connection string.
func String(s string) string {
	s = userInfoRE.ReplaceAllString(s, "${1}REDACTED@")
	return secretRE.ReplaceAllString(s, "${1}=REDACTED")
}

// Error returns err's message with credentials removed (see String), for logs.
func Error(err error) string {
	if err == nil {
		return ""
	}
	return String(err.Error())
}

// ReplaceAttr is a slog.HandlerOptions.ReplaceAttr that removes credentials
// (see String) from every string, error and Stringer logged, so that no
// code path can log a URL with a password or a SAS signature.
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if s := v.String(); maybeSecret(s) {
			return slog.String(a.Key, String(s))
		}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			if s := x.Error(); maybeSecret(s) {
				return slog.String(a.Key, String(s))
			}
		case fmt.Stringer:
			if s := x.String(); maybeSecret(s) {
				return slog.String(a.Key, String(s))
			}
		}
	}
	return a
}

// maybeSecret is a cheap filter before the regular expressions.
func maybeSecret(s string) bool {
	return strings.IndexByte(s, '=') >= 0 || strings.Contains(s, "@")
}
