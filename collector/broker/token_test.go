package broker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/broker"
	"github.com/pilake/pilake/internal/clock"
)

func FuzzVerifyToken(f *testing.F) {
	good, _ := broker.IssueToken(fleetKey, broker.RoleDevice, "pi-1", time.Unix(2e9, 0))
	f.Add("pi-1", good)
	f.Add("pi-1", "pl1.device.2000000000.")
	f.Add("", "pl1...")
	f.Fuzz(func(t *testing.T, id, token string) {
		role, exp, err := broker.VerifyToken(fleetKey, id, token, time.Unix(1.9e9, 0))
		if err != nil {
			if !errors.Is(err, broker.ErrTokenMalformed) && !errors.Is(err, broker.ErrTokenSignature) && !errors.Is(err, broker.ErrTokenExpired) {
				t.Fatalf("error %v wraps no token error", err)
			}
			return
		}
		// Only the token IssueToken made verifies.
		again, _ := broker.IssueToken(fleetKey, role, id, exp)
		if again != token {
			t.Fatalf("accepted %q for %q, issued would be %q", token, id, again)
		}
	})
}

// TestTokenExpiresWhileConnected: a client whose token expires can publish
// nothing more.
func TestTokenExpiresWhileConnected(t *testing.T) {
	clk := clock.NewFake(time.Unix(time.Now().Unix(), 0))
	b, ca, _, ld := secureBrokerWith(t, broker.AuthOptions{FleetKey: fleetKey, Clock: clk})
	tok, _ := broker.IssueToken(fleetKey, broker.RoleDevice, "pi-exp", clk.Now().Add(60*time.Second))
	lost := make(chan error, 1)
	c, err := dial(t, b, ca, "pi-exp", creds{user: "pi-exp", pass: tok}, lost)
	if err != nil {
		t.Fatal(err)
	}
	if pt := c.Publish(wire.TelemetryTopic("pi-exp"), 1, false, batch("pi-exp", 1, 5)); !pt.WaitTimeout(10*time.Second) || pt.Error() != nil {
		t.Fatal(pt.Error())
	}
	clk.Advance(61 * time.Second)
	c.Publish(wire.TelemetryTopic("pi-exp"), 1, false, batch("pi-exp", 2, 5))
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("an expired token's client kept publishing")
	}
	if n := ld.Stats().Batches.Load(); n != 1 {
		t.Errorf("%d batches landed, want 1", n)
	}
	if _, err := dial(t, b, ca, "pi-exp", creds{user: "pi-exp", pass: tok}, nil); err == nil {
		t.Error("an expired token connected")
	}
}
