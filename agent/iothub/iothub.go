package iothub

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pilake/pilake/agent/wire"
)

// APIVersion is the IoT Hub API version named in the MQTT username.
const APIVersion = "2021-04-12"

// Port is the only port on which IoT Hub accepts MQTT (over TLS).
const Port = 8883

// MaxMessageBytes is IoT Hub's limit on a device-to-cloud message.
const MaxMessageBytes = 256 * 1024

// ConnectionString is a parsed device connection string
// "HostName=…;DeviceId=…;SharedAccessKey=…".
type ConnectionString struct {
	HostName string // e.g. myhub.azure-devices.net
	DeviceID string
	Key      []byte // the decoded SharedAccessKey
}

// ErrBadConnectionString is wrapped by ParseConnectionString's errors.
var ErrBadConnectionString = errors.New("bad IoT Hub device connection string")

// ParseConnectionString parses a device connection string. It requires
// HostName, DeviceId and SharedAccessKey (base64); other keys (e.g.
// GatewayHostName) are ignored; ModuleId and x509 are not supported.
func ParseConnectionString(s string) (ConnectionString, error) {
	var cs ConnectionString
	var key string
	for part := range strings.SplitSeq(strings.TrimSpace(s), ";") {
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return cs, fmt.Errorf("%w: %q is not key=value", ErrBadConnectionString, part)
		}
		switch k {
		case "HostName":
			cs.HostName = v
		case "DeviceId":
			cs.DeviceID = v
		case "SharedAccessKey":
			key = v
		case "ModuleId":
			return cs, fmt.Errorf("%w: module identities are not supported", ErrBadConnectionString)
		case "x509":
			return cs, fmt.Errorf("%w: x509 authentication is not supported; use a SharedAccessKey", ErrBadConnectionString)
		}
	}
	switch {
	case cs.HostName == "":
		return cs, fmt.Errorf("%w: no HostName", ErrBadConnectionString)
	case strings.ContainsAny(cs.HostName, "/:@ "):
		return cs, fmt.Errorf("%w: HostName %q is not a host name", ErrBadConnectionString, cs.HostName)
	case cs.DeviceID == "":
		return cs, fmt.Errorf("%w: no DeviceId", ErrBadConnectionString)
	case key == "":
		return cs, fmt.Errorf("%w: no SharedAccessKey", ErrBadConnectionString)
	}
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return cs, fmt.Errorf("%w: SharedAccessKey is not base64: %w", ErrBadConnectionString, err)
	}
	cs.Key = k
	return cs, nil
}

// Resource is the SAS resource URI of the device: "{host}/devices/{device}".
func (cs ConnectionString) Resource() string {
	return cs.HostName + "/devices/" + cs.DeviceID
}

// Username is the MQTT username IoT Hub expects from the device.
func (cs ConnectionString) Username() string {
	return cs.HostName + "/" + cs.DeviceID + "/?api-version=" + APIVersion
}

// Token returns a SAS token for the device valid until expiry.
func (cs ConnectionString) Token(expiry time.Time) string {
	return SASToken(cs.Resource(), cs.Key, expiry.Unix())
}

// SASToken computes "SharedAccessSignature sr=…&sig=…&se=…" for resource,
// signed with key (already base64-decoded), expiring at expiry (Unix seconds).
func SASToken(resource string, key []byte, expiry int64) string {
	sr := url.QueryEscape(resource)
	return "SharedAccessSignature sr=" + sr + "&sig=" + url.QueryEscape(sign(sr, key, expiry)) +
		"&se=" + strconv.FormatInt(expiry, 10)
}

func sign(encodedResource string, key []byte, expiry int64) string {
	return rawHMAC(key, encodedResource+"\n"+strconv.FormatInt(expiry, 10))
}

// Token is a parsed SAS token.
type Token struct {
	Resource string // decoded sr
	Sig      string // decoded sig (base64)
	Expiry   int64
	KeyName  string // skn, empty for device tokens
}

// ErrBadToken is wrapped by ParseToken's and Verify's errors.
var ErrBadToken = errors.New("bad SAS token")

// ParseToken parses "SharedAccessSignature k=v&k=v…" (fields in any order).
func ParseToken(s string) (Token, error) {
	var t Token
	rest, ok := strings.CutPrefix(s, "SharedAccessSignature ")
	if !ok {
		return t, fmt.Errorf("%w: does not start with \"SharedAccessSignature \"", ErrBadToken)
	}
	var haveSe bool
	for part := range strings.SplitSeq(rest, "&") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return t, fmt.Errorf("%w: field %q is not key=value", ErrBadToken, part)
		}
		dv, err := url.QueryUnescape(v)
		if err != nil {
			return t, fmt.Errorf("%w: field %s: %w", ErrBadToken, k, err)
		}
		switch k {
		case "sr":
			t.Resource = dv
		case "sig":
			t.Sig = dv
		case "se":
			t.Expiry, err = strconv.ParseInt(dv, 10, 64)
			if err != nil {
				return t, fmt.Errorf("%w: se: %w", ErrBadToken, err)
			}
			haveSe = true
		case "skn":
			t.KeyName = dv
		}
	}
	if t.Resource == "" || t.Sig == "" || !haveSe {
		return t, fmt.Errorf("%w: missing sr, sig or se", ErrBadToken)
	}
	return t, nil
}

// Verify checks a SAS token the way IoT Hub does for a device: it must be
// for resource (case-insensitive, as IoT Hub compares host names), not
// expired at now, and signed with key.
func Verify(token, resource string, key []byte, now time.Time) error {
	t, err := ParseToken(token)
	if err != nil {
		return err
	}
	if !strings.EqualFold(t.Resource, resource) {
		return fmt.Errorf("%w: resource %q, want %q", ErrBadToken, t.Resource, resource)
	}
	if now.Unix() >= t.Expiry {
		return fmt.Errorf("%w: expired at %s", ErrBadToken, time.Unix(t.Expiry, 0).UTC())
	}
	want := sign(url.QueryEscape(t.Resource), key, t.Expiry)
	if subtle.ConstantTimeCompare([]byte(want), []byte(t.Sig)) != 1 {
		return fmt.Errorf("%w: signature does not match the device key", ErrBadToken)
	}
	return nil
}

// ContentType returns the MQTT message content type IoT Hub routing should
// record for a batch encoding.
func ContentType(enc wire.Encoding) string {
	if enc == wire.JSON {
		return "application/json"
	}
	return "application/octet-stream"
}

// Topic returns the device-to-cloud topic for a batch, with a property bag
// giving content type ($.ct), content encoding ($.ce, for JSON) and the
// pilake batch encoding (a custom "enc" property), so routing to storage can
// keep JSON bodies readable and consumers know how to decode the rest.
func Topic(deviceID string, enc wire.Encoding) string {
	// System property names stay literal ("$.ct", as in IoT Hub's
	// documentation); values are URL-encoded.
	bag := "$.ct=" + url.QueryEscape(ContentType(enc))
	if enc == wire.JSON {
		bag += "&$.ce=utf-8"
	}
	bag += "&enc=" + url.QueryEscape(enc.String())
	return "devices/" + deviceID + "/messages/events/" + bag
}

func rawHMAC(key []byte, msg string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}
