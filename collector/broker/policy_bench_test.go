package broker

import (
	"log/slog"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// BenchmarkPolicyPerPublish is what the identity and ACL policy adds to
// each publication an agent makes: the ACL check, the retain rule and the
// identity lookup the landing hook does.
func BenchmarkPolicyPerPublish(b *testing.B) {
	for _, tc := range []struct {
		name string
		id   identity
	}{
		{"device", identity{id: "pi-0042", role: RoleDevice, expiry: time.Now().Add(time.Hour)}},
		{"anonymous", identity{anon: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			br := &Broker{log: slog.New(slog.DiscardHandler)}
			p := &policy{b: br, stats: &br.stats, retained: map[string]struct{}{}}
			br.policy = p
			cl := &mqtt.Client{ID: "pi-0042"}
			p.ids.Store(cl, tc.id)
			pk := packets.Packet{TopicName: "pilake/v1/telemetry/pi-0042"}
			b.ReportAllocs()
			for b.Loop() {
				if !p.OnACLCheck(cl, pk.TopicName, true) {
					b.Fatal("denied")
				}
				if _, err := p.OnPublish(cl, pk); err != nil {
					b.Fatal(err)
				}
				if v, ok := p.ids.Load(cl); !ok || v.(identity).id != tc.id.id {
					b.Fatal("identity")
				}
			}
		})
	}
}
