package stages_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
)

func submitAll(t *testing.T, r *run, bs ...*wire.Batch) {
	t.Helper()
	for _, b := range bs {
		if err := r.p.Submit(t.Context(), landing.Landed{Name: notLanded, Batch: b, ReceivedAt: time.UnixMicro(t0), Source: "mqtt"}); err != nil {
			t.Fatal(err)
		}
	}
}

// A collector restarted cleanly in the middle of a device's stream: with
// KeepOpenOnStop the window open at the stop (batches 9-12 of 250 ms make
// the window [2 s, 3 s)) is continued after the restart and is whole in
// silver; without it, it was finalised at the stop and the rest of it went
// to silver_late. The device's last batch (FlagLast) finalises its windows
// before the second stop.
func TestKeepOpenOnStopAcrossARestart(t *testing.T) {
	for _, keep := range []bool{true, false} {
		t.Run(map[bool]string{true: "keep-open", false: "finalise"}[keep], func(t *testing.T) {
			l := newLake(t)
			bs := makeBatches("dev-r", 0xb0, 40, 100, t0, rand.New(rand.NewPCG(3, 4)))
			bs[len(bs)-1].Flags |= wire.FlagLast
			opts := stages.Options{Clock: clockAt(t0), MaxSkew: -1, KeepOpenOnStop: keep}
			r := start(t, l, opts)
			submitAll(t, r, bs[:10]...)
			r.stop(t)
			r = start(t, l, opts)
			submitAll(t, r, bs[10:]...)
			r.stop(t)
			late := readAll[schema.SilverLateRow](t, l, schema.SilverLate)
			silver := readAll[schema.SilverRow](t, l, schema.Silver)
			var sum int64
			for _, s := range silver {
				sum += s.Count
			}
			if !keep {
				// The old behaviour, which the option changes: batches 11
				// and 12 are late.
				if len(late) != 200 || sum != 3800 {
					t.Fatalf("finalising at the stop: %d late, silver counts %d; want 200 and 3800", len(late), sum)
				}
				return
			}
			if len(late) != 0 {
				t.Fatalf("%d readings in silver_late after a clean restart, want none", len(late))
			}
			if len(silver) != 10 || sum != 4000 {
				t.Fatalf("silver has %d windows counting %d readings, want 10 whole windows (4000): the last batch finalises them", len(silver), sum)
			}
			for _, s := range silver {
				if s.Count != 400 {
					t.Fatalf("window %d counts %d readings, want 400", s.WindowStart, s.Count)
				}
			}
			if st := r.p.Stats(); st.StreamsEnded != 1 || st.Late != 0 {
				t.Fatalf("stats: %d streams ended, %d late; want 1 and 0", st.StreamsEnded, st.Late)
			}
		})
	}
}

// The last batch of a stream that arrives before an earlier one (resent
// after a loss) finalises nothing until that one is in: it is not late.
func TestLastBatchWaitsForTheGap(t *testing.T) {
	l := newLake(t)
	bs := makeBatches("dev-g", 0xb1, 8, 100, t0, rand.New(rand.NewPCG(5, 6)))
	bs[7].Flags |= wire.FlagLast
	r := start(t, l, stages.Options{Clock: clockAt(t0), MaxSkew: -1, KeepOpenOnStop: true, CommitInterval: 10 * time.Millisecond})
	submitAll(t, r, bs[0], bs[1], bs[2], bs[3], bs[4], bs[6], bs[7])
	deadline := time.Now().Add(10 * time.Second)
	for r.p.Stats().Batches < 7 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", r.p.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := r.p.Stats(); st.StreamsEnded != 0 {
		t.Fatalf("%d streams ended with batch 6 missing", st.StreamsEnded)
	}
	submitAll(t, r, bs[5])
	r.stop(t)
	late := readAll[schema.SilverLateRow](t, l, schema.SilverLate)
	silver := readAll[schema.SilverRow](t, l, schema.Silver)
	var sum int64
	for _, s := range silver {
		sum += s.Count
	}
	if len(late) != 0 || sum != 800 || r.p.Stats().StreamsEnded != 1 {
		t.Fatalf("%d late, silver counts %d, %d streams ended; want 0, 800 (every window final), 1", len(late), sum, r.p.Stats().StreamsEnded)
	}
}
