package stages

import (
	"fmt"
	"time"

	"github.com/pilake/pilake/agent/wire"
)

// clockPolicy re-bases the timestamps of batches whose device clock was
// wrong, and refuses batches that would move a device's watermark ahead of
// time (issue 16's watermark hijack).
//
// Every reading's TimeUS is its monotonic capture time plus its batch's
// MonoOffsetUS (agent/sample), and the monotonic clock does not jump within
// a boot. So:
//
//   - A batch with wire.FlagClockSynced is trusted as is, and its offset
//     becomes its boot's reference — unless a reading is more than maxAhead
//     after the receive time: a synchronised clock is not in the future.
//     Pipeline.process quarantines every reading (of any batch, after
//     correction) beyond maxAhead (kind "skew", reason "ahead of the receive
//     time") instead of letting it move the device's watermark.
//   - A batch without it, of a boot whose reference is known, is re-based on
//     the reference: shift = reference − MonoOffsetUS (exact, whatever the
//     clock said).
//   - Otherwise, if a reading is more than maxAhead after the receive time
//     or more than maxBehind before it, the clock is wrong and nothing
//     better is known: the boot's offset is estimated so that the newest
//     reading is at the receive time (it cannot have been captured later),
//     and the smallest such estimate is kept per boot, so the batches of a
//     boot keep their spacing. Within the bounds an unsynchronised clock is
//     left alone (a Pi with a real-time clock and no NTP).
//
// The state is one entry per device (its latest boot), kept in memory: after
// a restart the first synchronised batch of a boot sets it again.
type clockPolicy struct {
	maxAhead, maxBehind int64 // µs; maxBehind <= 0: no lower bound
	devs                map[string]*clockRef
}

type clockRef struct {
	boot   uint64
	synced bool  // offset came from a synchronised batch
	offset int64 // the boot's true wall − monotonic, µs (or estimate)
	known  bool
}

// clockVerdict says what correct did.
type clockVerdict struct {
	shiftUS int64  // added to every reading's TimeUS
	reject  string // non-empty: quarantine the whole batch with this reason
}

// newClockPolicy returns the policy; off (or maxAhead <= 0) makes correct
// do nothing.
func newClockPolicy(maxAhead, maxBehind time.Duration, off bool) *clockPolicy {
	if off {
		maxAhead = -1
	}
	return &clockPolicy{maxAhead: maxAhead.Microseconds(), maxBehind: maxBehind.Microseconds(), devs: map[string]*clockRef{}}
}

// correct applies the policy to b (received at recvUS), shifting its
// readings in place.
func (c *clockPolicy) correct(b *wire.Batch, recvUS int64) clockVerdict {
	n := len(b.Readings)
	if n == 0 || c.maxAhead <= 0 {
		return clockVerdict{}
	}
	ref := c.devs[b.DeviceID]
	if ref == nil || ref.boot != b.BootID {
		if ref == nil {
			ref = &clockRef{}
			c.devs[b.DeviceID] = ref
		}
		*ref = clockRef{boot: b.BootID}
	}
	oldest, newest := b.Readings[0].TimeUS, b.Readings[n-1].TimeUS
	if b.MonoOffsetUS > maxOffsetUS || b.MonoOffsetUS < -maxOffsetUS || oldest < -maxOffsetUS || newest > maxOffsetUS {
		return clockVerdict{reject: fmt.Sprintf("clock offset %d µs or reading times %d..%d µs beyond ±%d µs", b.MonoOffsetUS, oldest, newest, int64(maxOffsetUS))}
	}
	if b.Flags&wire.FlagClockSynced != 0 {
		// Trusted as is; readings ahead of time are refused one by one
		// (Pipeline.process), and such a batch sets no reference.
		if newest <= recvUS+c.maxAhead {
			ref.synced, ref.known, ref.offset = true, true, b.MonoOffsetUS
		}
		return clockVerdict{}
	}
	var shift int64
	switch {
	case ref.synced:
		shift = ref.offset - b.MonoOffsetUS
	case newest > recvUS+c.maxAhead || c.maxBehind > 0 && oldest < recvUS-c.maxBehind || ref.known:
		// The newest reading was captured at the receive time at the latest:
		// the boot's offset is at most this.
		bound := b.MonoOffsetUS + recvUS - newest
		if !ref.known || bound < ref.offset {
			ref.offset, ref.known = bound, true
		}
		shift = ref.offset - b.MonoOffsetUS
	}
	if shift != 0 {
		for i := range b.Readings {
			b.Readings[i].TimeUS += shift
		}
	}
	return clockVerdict{shiftUS: shift}
}

// maxOffsetUS bounds offsets and times the policy computes with (about
// 3,000 years either side of 1970), so no shift overflows.
const maxOffsetUS = 1e17

func fmtUS(us int64) string { return time.UnixMicro(us).UTC().Format(time.RFC3339Nano) }
