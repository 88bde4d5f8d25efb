package stages_test

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/landing/landingtest"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
)

func TestSkewAndCorruptGoToQuarantine(t *testing.T) {
	l := newLake(t)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(8, 9))
	bs := makeBatches("dev-q", 1, 3, 100, t0, rng)
	// Batch 2: its last 10 readings are 20 min in the future of the receive time.
	for i := 90; i < 100; i++ {
		bs[1].Readings[i].TimeUS += 20 * 60 * 1_000_000
	}
	// A corrupt batch in landing/ (as if the disk or another writer broke
	// it): a segment whose one record does not decode.
	corrupt := landing.EncodeSegment([]landing.SegmentRecord{{ReceivedAt: time.UnixMicro(t0), Source: "mqtt", Payload: []byte{1, 2, 3}}})
	if err := l.PutIfAbsent(ctx, landing.SegmentName(time.UnixMicro(t0), inst2, 9), corrupt); err != nil {
		t.Fatal(err)
	}
	r := start(t, l, stages.Options{MaxSkew: 10 * time.Minute, Clock: clockAt(t0), SkipShutdownScan: false})
	for _, b := range bs {
		recv := time.UnixMicro(t0 + 1_000_000)
		name := landOne(t, l, recv, b)
		if err := r.p.Submit(ctx, landing.Landed{Name: name, Batch: b, ReceivedAt: recv, Source: "mqtt"}); err != nil {
			t.Fatal(err)
		}
	}
	r.stop(t)
	st := r.p.Stats()
	if st.Quarantined != 10 || st.QuarantinedFiles != 1 || st.Readings != 290 {
		t.Fatalf("stats %+v", st)
	}
	if n := len(readAll[schema.BronzeRow](t, l, schema.Bronze)); n != 290 {
		t.Fatalf("bronze %d rows", n)
	}
	objs, reasons := quarantineReasons(t, l)
	if len(reasons) != 2 || !strings.Contains(reasons[0], "10 readings captured more than 10m0s") || !strings.Contains(reasons[1], "decoding") {
		t.Fatalf("reasons %q (objects %v)", reasons, objs)
	}
	// A restart does not land the quarantined object again.
	r = start(t, l, stages.Options{MaxSkew: 10 * time.Minute, Clock: clockAt(t0)})
	r.stop(t)
	if st := r.p.Stats(); st.QuarantinedFiles != 0 || st.Readings != 0 {
		t.Fatalf("restart stats %+v", st)
	}
}

// The same landed input submitted in different orders (disorder within the
// allowed lateness) gives the same silver and gold tables.
func TestPipelineArrivalOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 11))
	var batches = append(makeBatches("dev-a", 1, 40, 400, t0, rng), makeBatches("dev-b", 2, 40, 400, t0+123, rng)...)
	var ref []schema.SilverRow
	var refGold int
	for k := range 3 {
		order := slices.Clone(batches)
		if k > 0 {
			// Swap neighbours (1 s batches, 10 s lateness: never late).
			for i := 0; i+1 < len(order); i += 2 {
				if rng.IntN(2) == 0 {
					order[i], order[i+1] = order[i+1], order[i]
				}
			}
		}
		l := newLake(t)
		r := start(t, l, stages.Options{MaxSkew: -1, Clock: clockAt(t0), CommitInterval: 10 * time.Millisecond})
		for _, b := range order {
			name := landOne(t, l, time.UnixMicro(t0), b)
			if err := r.p.Submit(t.Context(), landing.Landed{Name: name, Batch: b, ReceivedAt: time.UnixMicro(t0), Source: "mqtt"}); err != nil {
				t.Fatal(err)
			}
		}
		r.stop(t)
		silver := sortSilver(readAll[schema.SilverRow](t, l, schema.Silver))
		gold := len(readAll[schema.GoldRow](t, l, schema.Gold))
		if k == 0 {
			ref, refGold = silver, gold
			continue
		}
		if !rowsEqual(silver, ref) || gold != refGold {
			t.Fatalf("order %d: silver differs (%d vs %d rows) or gold (%d vs %d)", k, len(silver), len(ref), gold, refGold)
		}
	}
}

// quarantineReasons lists _quarantine/ and returns its objects and the
// reasons its records give, sorted.
func quarantineReasons(t *testing.T, l lake.Lake) ([]lake.Object, []string) {
	t.Helper()
	objs, err := l.List(t.Context(), schema.Quarantine)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, rec := range landingtest.Quarantined(t, l) {
		reasons = append(reasons, rec.Reason)
	}
	return objs, reasons
}

// Skewed readings at both ends of a batch, with accepted ones between them:
// the refused readings alone break the wire format's gap rule (more than
// 30 min between consecutive ones), yet they are quarantined with their
// reason (as plain JSON) and the rest lands; the commit does not retry
// forever.
func TestSkewQuarantineAcrossAGap(t *testing.T) {
	l := newLake(t)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(12, 13))
	b := makeBatches("dev-g", 1, 1, 100, t0, rng)[0]
	for i := range 10 {
		b.Readings[i].TimeUS -= 20 * 60 * 1_000_000
		b.Readings[99-i].TimeUS += 20 * 60 * 1_000_000
	}
	if err := b.Validate(); err != nil {
		t.Fatalf("the batch itself is valid: %v", err)
	}
	r := start(t, l, stages.Options{MaxSkew: 10 * time.Minute, Clock: clockAt(t0)})
	recv := time.UnixMicro(t0 + 1_000_000)
	name := landOne(t, l, recv, b)
	if err := r.p.Submit(ctx, landing.Landed{Name: name, Batch: b, ReceivedAt: recv, Source: "mqtt"}); err != nil {
		t.Fatal(err)
	}
	r.stop(t)
	if st := r.p.Stats(); st.Quarantined != 20 || st.Readings != 80 {
		t.Fatalf("stats %+v", st)
	}
	objs, reasons := quarantineReasons(t, l)
	if len(reasons) != 1 || !strings.Contains(reasons[0], "20 readings captured more than 10m0s") {
		t.Fatalf("reasons %q (objects %v)", reasons, objs)
	}
	for _, o := range objs {
		if strings.HasSuffix(o.Name, ".reason.json") {
			continue
		}
		data, err := l.Get(ctx, o.Name)
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ Readings []json.RawMessage }
		if err := json.Unmarshal(data, &got); err != nil || len(got.Readings) != 20 {
			t.Fatalf("%s: %d readings, %v: %.200s", o.Name, len(got.Readings), err, data)
		}
	}
}
