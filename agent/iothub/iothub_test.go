package iothub

import (
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
)

// TestSASTokenMicrosoftExample checks the token code against the worked
// example in Microsoft's Azure IoT SDK for Node.js (azure-iot-common):
// key base64("password"), resource "uri", expiry 12345 →
// sig "kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3D".
// https://github.com/Azure/azure-iot-sdk-node/blob/main/common/core/test/_shared_access_signature_test.js
// and its HMAC example (key base64("password"), "string-to-sign" →
// "o1n1hiIVgzVA2+krq9ty1Z4xsIJKJZP3dYT8MOi65Y4="):
// https://github.com/Azure/azure-iot-sdk-node/blob/main/common/core/test/_authorization_test.js
func TestSASTokenMicrosoftExample(t *testing.T) {
	key := []byte("password")
	got := SASToken("uri", key, 12345)
	want := "SharedAccessSignature sr=uri&sig=kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3D&se=12345"
	if got != want {
		t.Fatalf("SASToken = %q\nwant      %q", got, want)
	}
	// The HMAC primitive alone, against Microsoft's vector.
	if h := hmacB64(key, "string-to-sign"); h != "o1n1hiIVgzVA2+krq9ty1Z4xsIJKJZP3dYT8MOi65Y4=" {
		t.Fatalf("HMAC = %q, want Microsoft's o1n1hiIVgzVA2+krq9ty1Z4xsIJKJZP3dYT8MOi65Y4=", h)
	}
	if err := Verify(got, "uri", key, time.Unix(12344, 0)); err != nil {
		t.Fatalf("Verify of Microsoft's example: %v", err)
	}
}

func TestConnectionStringAndToken(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	cs, err := ParseConnectionString("HostName=myhub.azure-devices.net;DeviceId=pi-01;SharedAccessKey=" + key)
	if err != nil {
		t.Fatal(err)
	}
	if got := cs.Username(); got != "myhub.azure-devices.net/pi-01/?api-version=2021-04-12" {
		t.Fatalf("Username = %q", got)
	}
	exp := time.Unix(1_900_000_000, 0)
	tok := cs.Token(exp)
	if !strings.HasPrefix(tok, "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fpi-01&sig=") ||
		!strings.HasSuffix(tok, "&se=1900000000") {
		t.Fatalf("token %q has the wrong shape", tok)
	}
	tests := []struct {
		name     string
		token    string
		resource string
		key      []byte
		now      time.Time
		ok       bool
	}{
		{"valid", tok, cs.Resource(), cs.Key, exp.Add(-time.Hour), true},
		{"host case-insensitive", tok, "MyHub.azure-devices.net/devices/pi-01", cs.Key, exp.Add(-time.Hour), true},
		{"expired", tok, cs.Resource(), cs.Key, exp, false},
		{"wrong key", tok, cs.Resource(), []byte("another key"), exp.Add(-time.Hour), false},
		{"wrong device", tok, "myhub.azure-devices.net/devices/pi-02", cs.Key, exp.Add(-time.Hour), false},
		{"tampered expiry", strings.Replace(tok, "se=1900000000", "se=1900000001", 1), cs.Resource(), cs.Key, exp.Add(-time.Hour), false},
		{"not a token", "password", cs.Resource(), cs.Key, exp.Add(-time.Hour), false},
		{"missing sig", "SharedAccessSignature sr=a&se=1", "a", cs.Key, time.Unix(0, 0), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.token, tc.resource, tc.key, tc.now)
			if (err == nil) != tc.ok {
				t.Fatalf("Verify = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrBadToken) {
				t.Fatalf("error %v does not wrap ErrBadToken", err)
			}
		})
	}
}

func TestParseConnectionStringErrors(t *testing.T) {
	for _, s := range []string{
		"",
		"DeviceId=d;SharedAccessKey=a2V5",
		"HostName=h;SharedAccessKey=a2V5",
		"HostName=h;DeviceId=d",
		"HostName=h;DeviceId=d;SharedAccessKey=!!!",
		"HostName=h/x;DeviceId=d;SharedAccessKey=a2V5",
		"HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey=a2V5",
		"HostName=h;DeviceId=d;x509=true",
		"garbage",
	} {
		if _, err := ParseConnectionString(s); !errors.Is(err, ErrBadConnectionString) {
			t.Errorf("ParseConnectionString(%q) = %v, want ErrBadConnectionString", s, err)
		}
	}
}

func TestTopicPropertyBag(t *testing.T) {
	tests := []struct {
		enc  wire.Encoding
		want map[string]string
	}{
		{wire.JSON, map[string]string{"$.ct": "application/json", "$.ce": "utf-8", "enc": "json"}},
		{wire.Binary, map[string]string{"$.ct": "application/octet-stream", "enc": "pilake-v1"}},
		{wire.BinaryZstd, map[string]string{"$.ct": "application/octet-stream", "enc": "pilake-v1+zstd"}},
	}
	for _, tc := range tests {
		topic := Topic("pi-01", tc.enc)
		bag, ok := strings.CutPrefix(topic, "devices/pi-01/messages/events/")
		if !ok || !strings.HasPrefix(bag, "$.ct=") {
			t.Fatalf("topic %q: want devices/pi-01/messages/events/$.ct=…", topic)
		}
		v, err := url.ParseQuery(bag)
		if err != nil {
			t.Fatal(err)
		}
		if len(v) != len(tc.want) {
			t.Fatalf("property bag %v, want %v", v, tc.want)
		}
		for k, want := range tc.want {
			if v.Get(k) != want {
				t.Fatalf("property %s = %q, want %q (topic %q)", k, v.Get(k), want, topic)
			}
		}
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add("SharedAccessSignature sr=uri&sig=kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3D&se=12345")
	f.Add("SharedAccessSignature sr=a%zz&sig=b&se=1")
	f.Add("SharedAccessSignature ")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err == nil && (tok.Resource == "" || tok.Sig == "") {
			t.Fatalf("ParseToken(%q) accepted a token without sr or sig", s)
		}
		_ = Verify(s, "uri", []byte("password"), time.Unix(0, 0))
	})
}

func hmacB64(key []byte, msg string) string {
	// sign appends "\n{expiry}", so compute the bare HMAC the same way it does.
	return rawHMAC(key, msg)
}

func FuzzParseConnectionString(f *testing.F) {
	f.Add("HostName=myhub.azure-devices.net;DeviceId=pi-01;SharedAccessKey=a2V5")
	f.Add("HostName=h;DeviceId=d;SharedAccessKey=!!;x509=true")
	f.Add(";;=;")
	f.Fuzz(func(t *testing.T, s string) {
		cs, err := ParseConnectionString(s)
		if err != nil {
			if !errors.Is(err, ErrBadConnectionString) {
				t.Fatalf("error %v does not wrap ErrBadConnectionString", err)
			}
			return
		}
		if cs.HostName == "" || cs.DeviceID == "" || len(cs.Key) == 0 && !strings.Contains(s, "SharedAccessKey=") {
			t.Fatalf("accepted %q as %+v", s, cs)
		}
		_ = cs.Token(time.Unix(1, 0))
	})
}
