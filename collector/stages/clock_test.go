package stages

import (
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
)

func clockBatch(dev string, boot, seq uint64, synced bool, offsetUS, firstUS int64, n int) *wire.Batch {
	b := &wire.Batch{DeviceID: dev, BootID: boot, Seq: seq, IntervalUS: 2500, MonoOffsetUS: offsetUS}
	if synced {
		b.Flags |= wire.FlagClockSynced
	}
	for i := range n {
		b.Readings = append(b.Readings, wire.Reading{TimeUS: firstUS + int64(i)*2500, Temp: 2000, Press: 100000 * 256, Hum: 40 * 1024})
	}
	return b
}

// TestClockPolicy: issue 15's clock cases (a Pi 48 h behind, 3 h ahead,
// stepped by NTP) are re-based from the monotonic offset and the sync flag,
// not quarantined; issue 16's hijack (a synchronised batch 23 h ahead) is
// refused.
func TestClockPolicy(t *testing.T) {
	const h = int64(time.Hour / time.Microsecond)
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC).UnixMicro()
	mono := int64(1000) * 1_000_000 // 1,000 s since boot
	second := int64(1_000_000)

	t.Run("48h behind, unsynced, live", func(t *testing.T) {
		c := newClockPolicy(2*time.Minute, 24*time.Hour, false)
		off := now - 48*h - mono // the clock is 48 h behind
		b := clockBatch("d", 1, 1, false, off, mono+off, 400)
		recv := now + second // the batch's last reading at ~now, received 1 s later
		v := c.correct(b, recv)
		if v.reject != "" || v.shiftUS == 0 {
			t.Fatalf("verdict %+v", v)
		}
		if got := b.Readings[len(b.Readings)-1].TimeUS; got != recv {
			t.Errorf("newest reading re-based to %s, want the receive time %s", fmtUS(got), fmtUS(recv))
		}
		// The next batch of the boot keeps its spacing from the first.
		b2 := clockBatch("d", 1, 2, false, off, mono+off+second, 400)
		c.correct(b2, recv+second+second/2)
		if d := b2.Readings[0].TimeUS - b.Readings[0].TimeUS; d != second {
			t.Errorf("second batch starts %d µs after the first, want 1 s", d)
		}
		// NTP sets the clock: synchronised batches carry the true offset,
		// and a late unsynchronised batch of the boot is re-based on it exactly.
		trueOff := now - mono
		b3 := clockBatch("d", 1, 5, true, trueOff, mono+5*second+trueOff, 400)
		if v := c.correct(b3, now+6*second); v.reject != "" || v.shiftUS != 0 {
			t.Fatalf("synced batch: %+v", v)
		}
		b4 := clockBatch("d", 1, 3, false, off, mono+off+2*second, 400)
		c.correct(b4, now+7*second)
		if got, want := b4.Readings[0].TimeUS, mono+2*second+trueOff; got != want {
			t.Errorf("unsynced batch after the reference: %s, want %s", fmtUS(got), fmtUS(want))
		}
	})
	t.Run("3h ahead, unsynced", func(t *testing.T) {
		c := newClockPolicy(2*time.Minute, 24*time.Hour, false)
		off := now + 3*h - mono
		b := clockBatch("d", 2, 1, false, off, mono+off, 400)
		if v := c.correct(b, now+second); v.reject != "" || v.shiftUS >= 0 {
			t.Fatalf("verdict %+v", v)
		}
		if got := b.Readings[len(b.Readings)-1].TimeUS; got > now+second {
			t.Errorf("re-based reading %s is after the receive time", fmtUS(got))
		}
	})
	t.Run("synced 23h ahead sets no reference", func(t *testing.T) {
		c := newClockPolicy(2*time.Minute, 24*time.Hour, false)
		b := clockBatch("d", 3, 1, true, now+23*h-mono, now+23*h, 10)
		if v := c.correct(b, now); v.reject != "" || v.shiftUS != 0 || b.Readings[0].TimeUS != now+23*h {
			t.Fatalf("verdict %+v: a synced batch is never shifted (its readings are refused one by one)", v)
		}
		// The device's unsynced batches of that boot are not re-based on it.
		u := clockBatch("d", 3, 2, false, now-mono, now-second, 10)
		if v := c.correct(u, now); v.shiftUS != 0 {
			t.Fatalf("re-based on a reference ahead of time: %+v", v)
		}
	})
	t.Run("right clocks untouched", func(t *testing.T) {
		c := newClockPolicy(2*time.Minute, 24*time.Hour, false)
		// Synced, a backlog 20 h old.
		if v := c.correct(clockBatch("d", 4, 1, true, now-mono, now-20*h, 10), now); v.reject != "" || v.shiftUS != 0 {
			t.Errorf("synced backlog: %+v", v)
		}
		// Unsynced (an RTC, no NTP) and plausible.
		if v := c.correct(clockBatch("e", 5, 1, false, now-mono, now-10*second, 10), now); v.reject != "" || v.shiftUS != 0 {
			t.Errorf("unsynced plausible: %+v", v)
		}
	})
	t.Run("absurd offsets refused", func(t *testing.T) {
		c := newClockPolicy(2*time.Minute, 24*time.Hour, false)
		if v := c.correct(clockBatch("d", 6, 1, false, 1<<62, now, 10), now); v.reject == "" {
			t.Error("offset 2^62 accepted")
		}
	})
}
