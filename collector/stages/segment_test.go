package stages_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
	"github.com/pilake/pilake/internal/testwait"
)

// landSegment writes bs as segment number counter of instance inst, as a
// Lander would, received at recv from source, and returns its name.
func landSegment(t testing.TB, l lake.Lake, inst string, counter uint64, recv time.Time, source string, bs ...*wire.Batch) string {
	t.Helper()
	recs := make([]landing.SegmentRecord, 0, len(bs))
	for _, b := range bs {
		data, err := wire.NewEncoder(wire.Binary).Append(nil, b)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, landing.SegmentRecord{ReceivedAt: recv, Source: source, Payload: data})
	}
	name := landing.SegmentName(recv, inst, counter)
	if err := l.PutIfAbsent(t.Context(), name, landing.EncodeSegment(recs)); err != nil {
		t.Fatal(err)
	}
	return name
}

const inst1, inst2 = "00000000000000a1", "00000000000000b2"

// bronzeKeys returns the batches in bronze (device/boot/seq) and fails on a
// reading found twice.
func bronzeKeys(t *testing.T, l lake.Lake) map[string]schema.BronzeRow {
	t.Helper()
	type rk struct {
		dev           string
		boot, seq, ts int64
	}
	seen := map[rk]bool{}
	out := map[string]schema.BronzeRow{}
	for _, r := range readAll[schema.BronzeRow](t, l, schema.Bronze) {
		k := rk{r.Device, r.Boot, r.Seq, r.TS}
		if seen[k] {
			t.Fatalf("reading %+v twice in bronze", k)
		}
		seen[k] = true
		out[fmt.Sprintf("%s/%016x/%d", r.Device, r.Boot, r.Seq)] = r
	}
	return out
}

// Recovery reads segments with each batch's own receive time and source; a
// batch in three segments (redeliveries landed by other processes or after
// a restart) is in bronze once; a restart does not read processed segments
// again.
func TestRecoverSegments(t *testing.T) {
	l := newLake(t)
	rng := rand.New(rand.NewPCG(1, 2))
	bs := makeBatches("dev-s", 3, 6, 50, t0, rng)
	recv := time.UnixMicro(t0 + 2_000_000).UTC()
	seg1 := landSegment(t, l, inst1, 1, recv, "mqtt", bs[0], bs[1], bs[2])
	seg2 := landSegment(t, l, inst2, 7, recv.Add(time.Second), "iothub", bs[2], bs[3], bs[4]) // bs[2] redelivered
	seg3 := landSegment(t, l, inst2, 8, recv.Add(2*time.Second), "iothub", bs[4])             // bs[4] again
	seg4 := landSegment(t, l, inst2, 9, recv.Add(3*time.Second), "mqtt", bs[5])
	r := start(t, l, stages.Options{MaxSkew: -1, Clock: clockAt(t0)})
	r.stop(t)
	if st := r.p.Stats(); st.Batches != 6 || st.Readings != 300 || st.QuarantinedFiles != 0 {
		t.Fatalf("stats %+v; want 6 batches, 300 readings", st)
	}
	rows := bronzeKeys(t, l)
	if len(rows) != 6 {
		t.Fatalf("bronze holds %d batches, want 6", len(rows))
	}
	for i, want := range []struct {
		src  string
		recv time.Time
	}{{"mqtt", recv}, {"mqtt", recv}, {"mqtt", recv}, {"iothub", recv.Add(time.Second)}, {"iothub", recv.Add(time.Second)},
		{"mqtt", recv.Add(3 * time.Second)}} {
		r := rows[fmt.Sprintf("dev-s/%016x/%d", 3, i+1)]
		if r.Source != want.src || r.ReceivedAt != want.recv.UnixMicro() {
			t.Errorf("batch %d: source %q received %d; want %q %d (from its first segment in name order)", i+1, r.Source, r.ReceivedAt, want.src, want.recv.UnixMicro())
		}
	}
	// The checkpoint says every segment is processed: a restart does not
	// read them (it would quarantine what it cannot decode).
	for _, name := range []string{seg1, seg2, seg3, seg4} {
		if err := l.Put(t.Context(), name, []byte("overwritten")); err != nil {
			t.Fatal(err)
		}
	}
	r = start(t, l, stages.Options{MaxSkew: -1, Clock: clockAt(t0)})
	r.stop(t)
	if st := r.p.Stats(); st.Batches != 0 || st.QuarantinedFiles != 0 {
		t.Fatalf("restart stats %+v; want nothing read", st)
	}
}

// Batches submitted from a segment mark it processed once all of them are:
// a restart skips it. A segment not every batch of which was submitted is
// read by the scan at shutdown.
func TestSubmittedSegments(t *testing.T) {
	l := newLake(t)
	rng := rand.New(rand.NewPCG(3, 4))
	bs := makeBatches("dev-t", 1, 6, 50, t0, rng)
	recv := time.UnixMicro(t0 + 1_000_000)
	whole := landSegment(t, l, inst1, 1, recv, "mqtt", bs[0], bs[1], bs[2])
	part := landSegment(t, l, inst1, 2, recv, "mqtt", bs[3], bs[4], bs[5])
	r := start(t, l, stages.Options{MaxSkew: -1, Clock: clockAt(t0), SkipShutdownScan: false})
	<-r.p.Ready()
	submit := func(name string, b *wire.Batch) {
		t.Helper()
		if err := r.p.Submit(t.Context(), landing.Landed{Name: name, SegmentRecords: 3, Batch: b, ReceivedAt: recv, Source: "mqtt"}); err != nil {
			t.Fatal(err)
		}
	}
	// The scan at start read both (they were in landing/ before Run);
	// submissions of their batches are duplicates.
	submit(whole, bs[0])
	r.stop(t)
	if st := r.p.Stats(); st.Batches != 6 || st.Duplicates != 1 {
		t.Fatalf("stats %+v", st)
	}

	// Now segments written while the pipeline runs; no scan at shutdown.
	l = newLake(t)
	r = start(t, l, stages.Options{MaxSkew: -1, Clock: clockAt(t0), SkipShutdownScan: true})
	<-r.p.Ready()
	whole = landSegment(t, l, inst1, 1, recv, "mqtt", bs[0], bs[1], bs[2])
	part = landSegment(t, l, inst1, 2, recv, "mqtt", bs[3], bs[4], bs[5])
	for _, b := range bs[:3] {
		submit(whole, b)
	}
	submit(part, bs[3]) // bs[4], bs[5] never submitted (their Land calls failed)
	r.stop(t)
	if st := r.p.Stats(); st.Batches != 4 {
		t.Fatalf("stats %+v; want the 4 submitted batches", st)
	}
	// The restart skips the whole segment (it would quarantine it now) and
	// reads the other, adding its 2 batches not yet in bronze.
	if err := l.Put(t.Context(), whole, []byte("overwritten")); err != nil {
		t.Fatal(err)
	}
	r = start(t, l, stages.Options{MaxSkew: -1, Clock: clockAt(t0)})
	r.stop(t)
	if st := r.p.Stats(); st.Batches != 2 || st.QuarantinedFiles != 0 {
		t.Fatalf("restart stats %+v; want the 2 unsubmitted batches, the whole segment skipped", st)
	}
	if n := len(bronzeKeys(t, l)); n != 6 {
		t.Fatalf("bronze holds %d batches, want 6", n)
	}
}

// A damaged segment: its good records land, the undecodable record and the
// unreadable tail are quarantined with reasons, and it counts as processed.
func TestCorruptSegment(t *testing.T) {
	l := newLake(t)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(5, 6))
	bs := makeBatches("dev-c", 1, 3, 40, t0, rng)
	recv := time.UnixMicro(t0 + 1_000_000)
	var recs []landing.SegmentRecord
	for i, b := range bs {
		data, _ := wire.NewEncoder(wire.Binary).Append(nil, b)
		recs = append(recs, landing.SegmentRecord{ReceivedAt: recv, Source: "mqtt", Payload: data})
		if i == 0 {
			recs = append(recs, landing.SegmentRecord{ReceivedAt: recv, Source: "mqtt", Payload: []byte("not a batch")})
		}
	}
	data := landing.EncodeSegment(recs)
	data = append(data, 0x05, 'x', 'y') // a torn last record
	name := landing.SegmentName(recv, inst1, 1)
	if err := l.PutIfAbsent(ctx, name, data); err != nil {
		t.Fatal(err)
	}
	r := start(t, l, stages.Options{MaxSkew: -1, Clock: clockAt(t0)})
	r.stop(t)
	if st := r.p.Stats(); st.Batches != 3 || st.QuarantinedFiles != 2 {
		t.Fatalf("stats %+v; want 3 batches, 2 quarantined", st)
	}
	if n := len(bronzeKeys(t, l)); n != 3 {
		t.Fatalf("bronze %d batches", n)
	}
	objs, reasons := quarantineReasons(t, l)
	if len(objs) != 4 || len(reasons) != 2 || !strings.Contains(reasons[0], "decoding record 1") || !strings.Contains(reasons[1], "truncated") {
		t.Fatalf("quarantine %v, reasons %q", objs, reasons)
	}
	r = start(t, l, stages.Options{MaxSkew: -1, Clock: clockAt(t0)})
	r.stop(t)
	if st := r.p.Stats(); st.Batches != 0 || st.QuarantinedFiles != 0 {
		t.Fatalf("restart stats %+v", st)
	}
}

// Segments other collectors write while the stages run (ingest-only
// collectors on a shared subscription) reach bronze through the periodic
// scan; this process's own segments are left to its direct submissions (and
// the scan at shutdown).
func TestScanOtherCollectorsSegments(t *testing.T) {
	l := newLake(t)
	rng := rand.New(rand.NewPCG(3, 4))
	own := makeBatches("dev-own", 1, 2, 50, t0, rng)
	other := makeBatches("dev-other", 1, 4, 50, t0, rng)
	now := time.UnixMicro(t0 + 2_000_000).UTC()
	r := start(t, l, stages.Options{MaxSkew: -1, Clock: clockAt(now.UnixMicro()), ScanInterval: 10 * time.Millisecond, LocalInstance: inst1})
	<-r.p.Ready()
	// Written after the start-up scan, as a running collector's Lander would.
	landSegment(t, l, inst1, 1, now, "mqtt", own...)                       // ours, never submitted
	landSegment(t, l, inst2, 1, now.Add(-time.Hour), "mqtt", other[:2]...) // another collector, the previous hour
	landSegment(t, l, inst2, 2, now, "mqtt", other[2:]...)
	testwait.Until(t, "the periodic scan to take the other collector's 200 readings", func() bool { return r.p.Stats().Readings >= 200 })
	if got := r.p.Stats().Readings; got != 200 {
		t.Fatalf("while running: %d readings in bronze, want the other collector's 200 (our own segment is not scanned)", got)
	}
	r.stop(t) // the shutdown scan takes our own unsubmitted segment
	if got := r.p.Stats().Readings; got != 300 {
		t.Fatalf("after shutdown: %d readings, want 300", got)
	}
	if rows := bronzeKeys(t, l); len(rows) != 6 {
		t.Fatalf("bronze holds %d batches, want 6", len(rows))
	}
}
