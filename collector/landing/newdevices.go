package landing

import (
	"errors"
	"sync"
	"time"
)

// ErrNewDeviceRate is returned by Land (the message is not acknowledged, so
// its sender retries later) for a device id this Lander has not seen while
// new device ids arrive faster than NewDeviceLimit allows: every device
// costs partitions, state and metric series, so a flood of invented ids
// must not make them without bound. Devices the broker authenticated
// (Message.Peer set) are not limited: their credentials bound them.
var ErrNewDeviceRate = errors.New("landing: too many new device ids; retry later")

// NewDeviceLimit is a token bucket of device ids not seen before. Zero
// fields take the defaults in brackets; a negative PerSecond turns it off.
type NewDeviceLimit struct {
	PerSecond float64 // new device ids a second [100]
	Burst     int     // new device ids at once [10000]
	// MaxKnown bounds the set of known ids [1,000,000]; when full it is
	// cleared (known devices then pass as new ones again, within the rate).
	MaxKnown int
}

func (n NewDeviceLimit) withDefaults() NewDeviceLimit {
	if n.PerSecond == 0 {
		n.PerSecond = 100
	}
	if n.Burst == 0 {
		n.Burst = 10000
	}
	if n.MaxKnown == 0 {
		n.MaxKnown = 1_000_000
	}
	return n
}

type deviceGate struct {
	lim    NewDeviceLimit
	mu     sync.Mutex
	known  map[string]struct{}
	tokens float64
	at     time.Time
}

func newDeviceGate(l NewDeviceLimit) *deviceGate {
	l = l.withDefaults()
	return &deviceGate{lim: l, known: map[string]struct{}{}, tokens: float64(l.Burst)}
}

// admit reports whether device may land now: known, or new within the rate.
func (g *deviceGate) admit(device string, now time.Time) bool {
	if g.lim.PerSecond < 0 {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.known[device]; ok {
		return true
	}
	// now is a message's receive time, which need not be monotonic (IoT Hub
	// routing records carry their enqueue time, hours or days old): only a
	// later time refills the bucket, and an earlier one never drains it.
	if now.After(g.at) {
		if !g.at.IsZero() {
			g.tokens = min(float64(g.lim.Burst), g.tokens+now.Sub(g.at).Seconds()*g.lim.PerSecond)
		}
		g.at = now
	}
	if g.tokens < 1 {
		return false
	}
	g.tokens--
	if len(g.known) >= g.lim.MaxKnown {
		clear(g.known)
	}
	g.known[device] = struct{}{}
	return true
}

// KnowDevices marks devices as known (e.g. those in the stages' state at
// start-up), so that a restart does not count a whole fleet as new.
func (l *Lander) KnowDevices(devices []string) {
	g := l.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, d := range devices {
		if len(g.known) >= g.lim.MaxKnown {
			return
		}
		g.known[d] = struct{}{}
	}
}
