package ingest

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/landing"
)

// Acker tells agents behind an external broker which of their batches are
// landed: the broker's PUBACK to an agent only says the broker has a batch
// (and a broker without persistence, killed, loses it), so agents in ack
// mode "landed" or "auto" keep each batch until an Acker names it.
//
// Landed records a batch once it is durable in landing/ (or was already:
// a duplicate); every Interval, Run publishes per device and boot the seq
// ranges recorded since the previous round, as one wire.Ack on
// wire.AckTopic(device), QoS 1. Acks are idempotent, so a lost one only
// makes the agent resend (a duplicate, acknowledged again).
type Acker struct {
	// Publish sends one ack; required. It should not block for long.
	Publish func(topic string, payload []byte) error
	// Interval between rounds [250ms]: a longer one gathers more batches
	// per ack, and slows agents that keep few batches unlanded
	// (--max-unlanded, 8) while a backlog drains.
	Interval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	mu   sync.Mutex
	pend map[ackStream]landing.SeqRanges

	sent, failed, resendAsked atomic.Uint64
}

type ackStream struct {
	device string
	boot   uint64
}

// Landed records that device's batch boot/seq is durable.
func (a *Acker) Landed(device string, boot, seq uint64) {
	a.mu.Lock()
	if a.pend == nil {
		a.pend = map[ackStream]landing.SeqRanges{}
	}
	k := ackStream{device, boot}
	a.pend[k] = a.pend[k].Add(seq)
	a.mu.Unlock()
}

// RequestResend asks device to send again the batches of boot in ranges
// (sorted, disjoint): gaps the stages see that the agent may still hold.
func (a *Acker) RequestResend(device string, boot uint64, ranges [][2]uint64) {
	for len(ranges) > 0 {
		n := min(len(ranges), wire.MaxAckRanges)
		payload := wire.EncodeAck(nil, &wire.Ack{Boot: boot, Resend: ranges[:n]})
		ranges = ranges[n:]
		if err := a.Publish(wire.AckTopic(device), payload); err != nil {
			a.failed.Add(1)
			continue
		}
		a.resendAsked.Add(1)
	}
}

// ResendRequests counts the resend requests published.
func (a *Acker) ResendRequests() uint64 { return a.resendAsked.Load() }

// Sent and Failed count the acks published and those whose publication failed.
func (a *Acker) Sent() uint64   { return a.sent.Load() }
func (a *Acker) Failed() uint64 { return a.failed.Load() }

// Run publishes acks every Interval until ctx ends, then once more.
func (a *Acker) Run(ctx context.Context) {
	iv := a.Interval
	if iv <= 0 {
		iv = 250 * time.Millisecond
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			a.Flush()
			return
		case <-t.C:
			a.Flush()
		}
	}
}

// Flush publishes what was recorded since the last round.
func (a *Acker) Flush() {
	a.mu.Lock()
	pend := a.pend
	a.pend = nil
	a.mu.Unlock()
	var buf []byte
	for k, rs := range pend {
		for len(rs) > 0 {
			n := min(len(rs), wire.MaxAckRanges)
			buf = wire.EncodeAck(buf[:0], &wire.Ack{Boot: k.boot, Landed: rs[:n]})
			rs = rs[n:]
			// The payload is copied: paho may still hold it after Publish.
			if err := a.Publish(wire.AckTopic(k.device), append([]byte(nil), buf...)); err != nil {
				a.failed.Add(1)
				a.logger().Debug("publishing a landing ack failed; the agent will resend", "device", k.device, "err", err)
				continue
			}
			a.sent.Add(1)
		}
	}
}

func (a *Acker) logger() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

// GapSource is what RunResendRequests needs from the stages.
type GapSource interface {
	// Gaps returns, per stream "device/boot(hex)", the missing seq ranges.
	Gaps() map[string][][2]uint64
}

// RunResendRequests asks agents, every interval until ctx ends, for the
// batches the stages miss — those missing in two rounds in a row, so
// batches merely on their way are not asked for.
func (a *Acker) RunResendRequests(ctx context.Context, src GapSource, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var prev map[string][][2]uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := src.Gaps()
		for stream, rs := range cur {
			old, ok := prev[stream]
			if !ok {
				continue
			}
			var both [][2]uint64
			for _, r := range rs {
				for _, o := range old {
					if lo, hi := max(r[0], o[0]), min(r[1], o[1]); lo <= hi {
						both = append(both, [2]uint64{lo, hi})
					}
				}
			}
			dev, bootHex, _ := strings.Cut(stream, "/")
			boot, err := strconv.ParseUint(bootHex, 16, 64)
			if err != nil || len(both) == 0 {
				continue
			}
			slices.SortFunc(both, func(x, y [2]uint64) int { return cmp.Compare(x[0], y[0]) })
			a.RequestResend(dev, boot, both)
		}
		prev = cur
	}
}
