package stages_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
)

// TestWatermarkHijack: issue 16 item 2. One batch 23 h ahead (inside the
// 24 h skew rule) from a "synchronised" clock used to move the device's
// watermark, so all its real readings went to silver_late for a day. Now
// readings more than MaxAhead (2 min) after their receive time are
// quarantined with a reason, and the device's real readings that follow
// are on time: silver_late stays empty.
func TestWatermarkHijack(t *testing.T) {
	l := newLake(t)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(21, 22))
	real := makeBatches("dev-h", 1, 6, 400, t0, rng)
	forged := makeBatches("dev-h", 2, 1, 50, t0+int64(23*time.Hour/time.Microsecond), rng)[0]
	r := start(t, l, stages.Options{Clock: clockAt(t0)})
	submit := func(b *wire.Batch, recvUS int64) {
		t.Helper()
		if err := r.p.Submit(ctx, landing.Landed{Name: notLanded, Batch: b, ReceivedAt: time.UnixMicro(recvUS), Source: "mqtt"}); err != nil {
			t.Fatal(err)
		}
	}
	// Each real batch is received right after its last reading.
	recvOf := func(b *wire.Batch) int64 { return b.Readings[len(b.Readings)-1].TimeUS + 100_000 }
	submit(real[0], recvOf(real[0]))
	submit(real[1], recvOf(real[1]))
	submit(forged, recvOf(real[1])+1000)
	for _, b := range real[2:] {
		submit(b, recvOf(b))
	}
	r.stop(t)
	st := r.p.Stats()
	if st.Ahead != 50 || st.Quarantined != 50 || st.Readings != 6*400 || st.Late != 0 {
		t.Fatalf("stats %+v: want the forged 50 readings quarantined as ahead, 2400 in bronze, none late", st)
	}
	if late := readAll[schema.SilverLateRow](t, l, schema.SilverLate); len(late) != 0 {
		t.Fatalf("silver_late holds %d rows, want none", len(late))
	}
	_, reasons := quarantineReasons(t, l)
	if len(reasons) != 1 || !strings.Contains(reasons[0], "50 readings captured more than 2m0s ahead of the receive time") {
		t.Fatalf("quarantine reasons %q", reasons)
	}
}

// TestClockBehindIsCorrected: issue 15. A Pi whose clock is 48 h behind
// (not synchronised) sends live batches; then NTP sets its clock. The
// batches are re-based from their monotonic offset instead of being
// quarantined for skew, and land at the true time, contiguous with the
// batches after the step: every reading in bronze, none quarantined or late.
func TestClockBehindIsCorrected(t *testing.T) {
	l := newLake(t)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(23, 24))
	const behind = int64(48 * time.Hour / time.Microsecond)
	bs := makeBatches("dev-b", 7, 8, 400, t0, rng) // true times
	trueOff := t0 - 5_000_000_000                  // wall − monotonic of a Pi up for 5,000 s
	for i, b := range bs {
		b.MonoOffsetUS = trueOff
		if i < 4 { // before NTP: 48 h behind, not synchronised
			b.Flags &^= wire.FlagClockSynced
			b.MonoOffsetUS -= behind
			for j := range b.Readings {
				b.Readings[j].TimeUS -= behind
			}
		} else if i == 4 {
			b.Flags |= wire.FlagClockStepped
		}
	}
	r := start(t, l, stages.Options{Clock: clockAt(t0)})
	for i, b := range bs {
		recv := t0 + int64(i+1)*1_000_000 + 2_000 // each received 2 ms after its last reading's true time
		if err := r.p.Submit(ctx, landing.Landed{Name: notLanded, Batch: b, ReceivedAt: time.UnixMicro(recv), Source: "mqtt"}); err != nil {
			t.Fatal(err)
		}
	}
	r.stop(t)
	st := r.p.Stats()
	if st.Readings != 8*400 || st.Quarantined != 0 || st.Late != 0 || st.ClockCorrected != 4 {
		t.Fatalf("stats %+v: want all 3200 readings in bronze, 4 batches corrected, none quarantined or late", st)
	}
	bronze := readAll[schema.BronzeRow](t, l, schema.Bronze)
	seen := map[int64]bool{}
	for _, row := range bronze {
		if row.TS < t0-10_000 || row.TS > t0+8_000_000 {
			t.Fatalf("bronze reading seq %d at %s, outside the true span", row.Seq, time.UnixMicro(row.TS).UTC())
		}
		if seen[row.TS] {
			t.Fatalf("two readings at %d", row.TS)
		}
		seen[row.TS] = true
	}
}
