package broker

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pilake/pilake/agent/wire"
)

// Role is what an authenticated identity may do on the broker.
type Role string

// Roles.
const (
	// RoleDevice publishes pilake/v1/telemetry/{id} and pilake/v1/status/{id}
	// and nothing else; it subscribes to nothing.
	RoleDevice Role = "device"
	// RoleDashboard reads live updates and device status.
	RoleDashboard Role = "dashboard"
	// RoleOps reads live updates and device status (operators' tools).
	RoleOps Role = "ops"
)

// ValidRole reports whether r is one of the roles.
func ValidRole(r Role) bool { return r == RoleDevice || r == RoleDashboard || r == RoleOps }

// Token errors; VerifyToken wraps one of them.
var (
	// ErrTokenMalformed: the password is not a pilake token.
	ErrTokenMalformed = errors.New("malformed token")
	// ErrTokenSignature: the token was not issued with this fleet key for this identity.
	ErrTokenSignature = errors.New("token signature does not match")
	// ErrTokenExpired: the token's expiry has passed.
	ErrTokenExpired = errors.New("token expired")
)

// tokenPrefix starts every token (and versions the format).
const tokenPrefix = "pl1."

// MinFleetKeyLen is the shortest fleet key accepted (bytes).
const MinFleetKeyLen = 32

// IssueToken returns the password of identity id with role, valid until
// expiry: "pl1.{role}.{expiry unix s}.{signature}", where the signature is
// base64url(HMAC-SHA256(fleetKey, "pilake-token-v1\n{role}\n{id}\n{expiry}")).
// Like an IoT Hub SAS token it needs no registry: the broker recomputes it
// from the fleet key. The MQTT username is id.
func IssueToken(fleetKey []byte, role Role, id string, expiry time.Time) (string, error) {
	if len(fleetKey) < MinFleetKeyLen {
		return "", fmt.Errorf("fleet key of %d bytes: want at least %d", len(fleetKey), MinFleetKeyLen)
	}
	if !ValidRole(role) {
		return "", fmt.Errorf("role %q: want device, dashboard or ops", role)
	}
	if !wire.ValidDeviceID(id) {
		return "", fmt.Errorf("identity %q: want 1-%d of [A-Za-z0-9._-]", id, wire.MaxDeviceIDLen)
	}
	exp := strconv.FormatInt(expiry.Unix(), 10)
	return tokenPrefix + string(role) + "." + exp + "." + tokenSig(fleetKey, role, id, exp), nil
}

func tokenSig(key []byte, role Role, id, exp string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("pilake-token-v1\n" + string(role) + "\n" + id + "\n" + exp))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// VerifyToken checks token as the password of identity id at now and returns
// its role and expiry. The signature is compared in constant time.
func VerifyToken(fleetKey []byte, id, token string, now time.Time) (Role, time.Time, error) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok || len(token) > 256 {
		return "", time.Time{}, ErrTokenMalformed
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return "", time.Time{}, ErrTokenMalformed
	}
	role, exp, sig := Role(parts[0]), parts[1], parts[2]
	secs, err := strconv.ParseInt(exp, 10, 64)
	if !ValidRole(role) || err != nil || !wire.ValidDeviceID(id) {
		return "", time.Time{}, ErrTokenMalformed
	}
	if !hmac.Equal([]byte(sig), []byte(tokenSig(fleetKey, role, id, exp))) {
		return "", time.Time{}, ErrTokenSignature
	}
	expiry := time.Unix(secs, 0)
	if !now.Before(expiry) {
		return "", time.Time{}, fmt.Errorf("%w at %s", ErrTokenExpired, expiry.UTC().Format(time.RFC3339))
	}
	return role, expiry, nil
}
