package redact

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"tcp://user:s3cret@host:1883", "tcp://user:REDACTED@host:1883"},
		{"ssl://host:8883", "ssl://host:8883"},
		{"https://acct.blob.core.windows.net/c/x?sv=2022&sig=abc%2Bdef&se=2026", "https://acct.blob.core.windows.net/c/x?sv=2022&sig=REDACTED&se=2026"},
		{"tcp://user@host:1883", "tcp://user@host:1883"},
	} {
		if got := URL(tc.in); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestError(t *testing.T) {
	inner := &url.Error{Op: "Get", URL: "http://127.0.0.1:1/acct/c?restype=container&sv=2022-11-02&sig=SECRETSIG%3D&sp=rl", Err: errors.New("connection refused")}
	for _, s := range []string{
		Error(inner),
		String("dial tcp://bob:hunter2@host:1883 failed"),
		String("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=SECRETKEY==;EndpointSuffix=x"),
		String("HostName=h;DeviceId=d;SharedAccessKey=SECRETKEY="),
	} {
		for _, secret := range []string{"SECRETSIG", "hunter2", "SECRETKEY"} {
			if strings.Contains(s, secret) {
				t.Errorf("%q still holds %s", s, secret)
			}
		}
	}
}

func TestClean(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"pilake/v1/telemetry/pi-1", 100, "pilake/v1/telemetry/pi-1"},
		{"a\nb\x1b[31m", 100, `a\x0ab\x1b[31m`},
		{"evil\u202eexe.txt", 100, `evil\u202eexe.txt`},
		{"bad\xffutf8", 100, `bad\xffutf8`},
		{strings.Repeat("x", 1000), 10, "xxxxxxxxxx…(1000 bytes)"},
	} {
		if got := Clean(tc.in, tc.max); got != tc.want {
			t.Errorf("Clean(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzClean(f *testing.F) {
	f.Add("a\u202eb\x00", 8)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 1<<16 {
			return
		}
		out := Clean(s, max)
		if needsEscape(out) {
			t.Fatalf("Clean(%q) = %q still needs escaping", s, out)
		}
		if len(out) > max+40 {
			t.Fatalf("Clean(%q, %d) is %d bytes", s, max, len(out))
		}
	})
}
