package delta_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// v2Table is a table with V2 checkpoints on a clock the test moves, and
// the live files the test expects.
type v2Table struct {
	t    *testing.T
	l    lake.Lake
	now  time.Time
	tb   *delta.Table
	live map[string]bool
}

func newV2Table(t *testing.T, l lake.Lake) *v2Table {
	t.Helper()
	v := &v2Table{t: t, l: l, now: time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), live: map[string]bool{}}
	v.open()
	return v
}

func (v *v2Table) open() {
	v.t.Helper()
	tb, err := delta.Open[schema.SilverRow](v.t.Context(), v.l, "t", delta.Options{Now: func() time.Time { return v.now },
		CheckpointInterval: 1000, CheckpointPolicy: delta.CheckpointV2})
	if err != nil {
		v.t.Fatal(err)
	}
	v.tb = tb
}

// add commits n new files, one commit each.
func (v *v2Table) add(n int) []delta.AddFile {
	v.t.Helper()
	var out []delta.AddFile
	for i := range n {
		a, err := delta.WriteFile(v.t.Context(), v.tb, []schema.SilverRow{{Device: "d", WindowStart: v.now.UnixMicro() + int64(i)}}, nil)
		if err != nil {
			v.t.Fatal(err)
		}
		if _, err := v.tb.Commit(v.t.Context(), []delta.Action{{Add: &a}}, "WRITE"); err != nil {
			v.t.Fatal(err)
		}
		v.live[a.Path] = true
		out = append(out, a)
	}
	return out
}

// remove commits the removal of files (as compaction does).
func (v *v2Table) remove(files ...delta.AddFile) {
	v.t.Helper()
	var actions []delta.Action
	for _, f := range files {
		actions = append(actions, delta.Action{Remove: &delta.RemoveFile{Path: f.Path, DeletionTimestamp: v.now.UnixMilli(),
			ExtendedFileMetadata: true, Size: f.Size, PartitionValues: map[string]string{}}})
		delete(v.live, f.Path)
	}
	if _, err := v.tb.Commit(v.t.Context(), actions, "OPTIMIZE"); err != nil {
		v.t.Fatal(err)
	}
}

// checkpoint writes a checkpoint and returns the objects it wrote.
func (v *v2Table) checkpoint() []string {
	v.t.Helper()
	if err := v.tb.Checkpoint(v.t.Context()); err != nil {
		v.t.Fatal(err)
	}
	return v.tb.CheckpointStats().Written
}

// verify loads the table (from _last_checkpoint, and by listing) and
// checks its live files and tombstones.
func (v *v2Table) verify(tombstones ...string) {
	v.t.Helper()
	ctx := v.t.Context()
	for _, how := range []string{"last checkpoint", "listing"} {
		var snap *delta.Snapshot
		var err error
		if how == "listing" {
			data, gerr := v.l.Get(ctx, delta.LastCheckpointName("t"))
			if gerr == nil {
				if err := v.l.Delete(ctx, delta.LastCheckpointName("t")); err != nil {
					v.t.Fatal(err)
				}
				defer func() { _ = v.l.Put(ctx, delta.LastCheckpointName("t"), data) }()
			}
		}
		snap, err = delta.Load(ctx, v.l, "t")
		if err != nil {
			v.t.Fatalf("load (%s): %v", how, err)
		}
		var got []string
		for _, f := range snap.Files() {
			got = append(got, f.Path)
		}
		want := slices.Sorted(mapKeys(v.live))
		if !slices.Equal(got, want) {
			v.t.Fatalf("load (%s): live files %v, want %v", how, got, want)
		}
		var tombs []string
		for _, r := range snap.Tombstones() {
			tombs = append(tombs, r.Path)
		}
		slices.Sort(tombstones)
		if !slices.Equal(tombs, tombstones) {
			v.t.Fatalf("load (%s): tombstones %v, want %v", how, tombs, tombstones)
		}
	}
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func sidecars(t *testing.T, l lake.Lake) []string {
	t.Helper()
	objs, err := l.List(t.Context(), "t/_delta_log/_sidecars/")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range objs {
		out = append(out, o.Name)
	}
	return out
}

// TestCheckpointV2ReusesSidecars: a V2 checkpoint puts the live files in
// sidecars by day; the next checkpoint reuses the sidecars of days nothing
// has changed in and rewrites the others; a reopened Table (which reads
// the checkpoint) reuses them too; every checkpoint loads as exactly the
// reconciled state.
func TestCheckpointV2ReusesSidecars(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	v := newV2Table(t, l)
	snap, err := delta.Load(ctx, l, "t")
	if err != nil {
		t.Fatal(err)
	}
	if p := snap.Protocol; p.MinReaderVersion != 3 || p.MinWriterVersion != 7 || !slices.Contains(p.ReaderFeatures, "v2Checkpoint") ||
		!slices.Contains(p.WriterFeatures, "v2Checkpoint") || snap.Metadata.Configuration[delta.PropCheckpointPolicy] != "v2" {
		t.Fatalf("new v2 table: protocol %+v, configuration %v", p, snap.Metadata.Configuration)
	}

	day1 := v.add(5)
	w1 := v.checkpoint()
	if len(w1) != 2 || !strings.HasSuffix(w1[1], ".checkpoint.parquet") || v.tb.CheckpointStats().Sidecars != 1 {
		t.Fatalf("first checkpoint wrote %v, %d sidecars", w1, v.tb.CheckpointStats().Sidecars)
	}
	v.verify()

	v.now = v.now.Add(24 * time.Hour)
	day2 := v.add(3)
	w2 := v.checkpoint()
	if len(w2) != 2 || v.tb.CheckpointStats().Sidecars != 2 || slices.Contains(w2, w1[0]) {
		t.Fatalf("second checkpoint wrote %v (day 1's sidecar %s should be reused), %d sidecars", w2, w1[0], v.tb.CheckpointStats().Sidecars)
	}
	v.verify()

	// A day-1 file is removed (compacted away): day 1's sidecar is
	// rewritten without it, day 2's reused, the tombstone in a new sidecar.
	v.now = v.now.Add(time.Hour)
	v.remove(day1[0])
	w3 := v.checkpoint()
	if len(w3) != 3 || v.tb.CheckpointStats().Sidecars != 3 || slices.Contains(w3, w2[0]) || slices.Contains(w3, w1[0]) {
		t.Fatalf("third checkpoint wrote %v (day 2's %s reused), %d sidecars", w3, w2[0], v.tb.CheckpointStats().Sidecars)
	}
	v.verify(day1[0].Path)

	// A file of the reused day 2 sidecar added again (same path, new
	// stats): the sidecar may not be reused with the old add.
	again := day2[1]
	again.Stats = `{"numRecords":1}`
	if _, err := v.tb.Commit(ctx, []delta.Action{{Add: &again}}, "WRITE"); err != nil {
		t.Fatal(err)
	}
	w4 := v.checkpoint()
	if slices.Contains(w4, w2[0]) || len(w4) != 3 {
		t.Fatalf("fourth checkpoint wrote %v", w4)
	}
	snap, err = delta.Load(ctx, l, "t")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range snap.Files() {
		if f.Path == again.Path && f.Stats != again.Stats {
			t.Fatalf("re-added file has stats %s, want %s", f.Stats, again.Stats)
		}
	}
	v.verify(day1[0].Path)

	// A reopened Table knows the sidecars from the checkpoint it reads.
	v.now = v.now.Add(time.Hour)
	v.open()
	v.add(1)
	w5 := v.checkpoint()
	if len(w5) != 3 { // day 2's sidecar (a file added), tombstones, the top-level file; day 1's reused
		t.Fatalf("checkpoint after reopening wrote %v", w5)
	}
	v.verify(day1[0].Path)

	// The top-level file: one checkpointMetadata naming its version, the
	// sidecars, no file actions; sidecars: only add and remove columns.
	top, err := l.Get(ctx, w5[len(w5)-1])
	if err != nil {
		t.Fatal(err)
	}
	f, err := delta.OpenParquet(top)
	if err != nil {
		t.Fatal(err)
	}
	type topRow struct {
		Add  *struct{ Path string } `parquet:"add,optional"`
		Meta *struct {
			Version int64 `parquet:"version"`
		} `parquet:"checkpointMetadata,optional"`
		Sidecar *struct{ Path string } `parquet:"sidecar,optional"`
	}
	rows := make([]topRow, f.NumRows())
	r := parquet.NewGenericReader[topRow](f)
	if _, err := r.Read(rows); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	var metas, scs int
	for _, row := range rows {
		if row.Add != nil {
			t.Fatal("a file action in the top-level file")
		}
		if row.Meta != nil {
			metas++
			if row.Meta.Version != v.tb.Snapshot().Version {
				t.Fatalf("checkpointMetadata version %d, want %d", row.Meta.Version, v.tb.Snapshot().Version)
			}
		}
		if row.Sidecar != nil {
			scs++
		}
	}
	if metas != 1 || scs != 3 {
		t.Fatalf("top-level file: %d checkpointMetadata, %d sidecars", metas, scs)
	}
	sf, err := l.Get(ctx, w5[0])
	if err != nil {
		t.Fatal(err)
	}
	pf, err := delta.OpenParquet(sf)
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, c := range pf.Schema().Fields() {
		cols = append(cols, c.Name())
	}
	if !slices.Equal(cols, []string{"add", "remove"}) {
		t.Fatalf("sidecar columns %v", cols)
	}
	var lc delta.LastCheckpoint
	data, err := l.Get(ctx, delta.LastCheckpointName("t"))
	if err != nil || json.Unmarshal(data, &lc) != nil {
		t.Fatal(err)
	}
	if lc.Version != v.tb.Snapshot().Version || lc.NumOfAddFiles != int64(len(v.live)) || lc.SizeInBytes != v.tb.CheckpointStats().Bytes {
		t.Fatalf("_last_checkpoint %+v", lc)
	}
}

// failLake fails Put of names for which fail says so.
type failLake struct {
	lake.Lake
	fail func(name string) bool
}

var errInjected = errors.New("injected failure")

func (f *failLake) Put(ctx context.Context, name string, data []byte) error {
	if f.fail != nil && f.fail(name) {
		return errInjected
	}
	return f.Lake.Put(ctx, name, data)
}

// TestCheckpointV2Crash: a checkpoint that fails after writing its
// sidecars (before the top-level file, or before _last_checkpoint) leaves
// the table readable as it is; the next checkpoint succeeds.
func TestCheckpointV2Crash(t *testing.T) {
	for _, stage := range []string{"top-level file", "_last_checkpoint"} {
		t.Run(stage, func(t *testing.T) {
			fl := &failLake{Lake: newLake(t)}
			v := newV2Table(t, fl)
			v.add(3)
			v.checkpoint()
			v.now = v.now.Add(24 * time.Hour)
			v.add(2)
			before := len(sidecars(t, fl))
			fl.fail = func(name string) bool {
				if stage == "top-level file" {
					return strings.HasSuffix(name, ".checkpoint.parquet")
				}
				return strings.HasSuffix(name, "_last_checkpoint")
			}
			if err := v.tb.Checkpoint(t.Context()); !errors.Is(err, errInjected) {
				t.Fatalf("checkpoint: %v, want the injected failure", err)
			}
			if after := len(sidecars(t, fl)); after != before+1 {
				t.Fatalf("%d sidecars after the failed checkpoint, %d before", after, before)
			}
			fl.fail = nil
			v.verify()
			v.add(1)
			v.checkpoint()
			v.verify()
		})
	}
}

// TestCleanupLogKeepsReferencedSidecars: metadata cleanup deletes old
// checkpoints, and then exactly the sidecars no remaining checkpoint
// references and that are over a day old: a sidecar an old checkpoint wrote
// and the newest still reuses stays; an orphan of a failed checkpoint goes
// once old, not while fresh.
func TestCleanupLogKeepsReferencedSidecars(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	v := newV2Table(t, l)
	a := v.add(1) // version 1, day 1
	s1 := v.checkpoint()[0]
	v.now = v.now.Add(24 * time.Hour)
	b := v.add(1) // version 2, day 2
	s2 := v.checkpoint()[0]
	v.now = v.now.Add(time.Hour)
	v.remove(b[0]) // version 3: day 2's group is empty, day 1's reused
	w3 := v.checkpoint()
	if len(w3) != 2 {
		t.Fatalf("third checkpoint wrote %v", w3)
	}
	t3 := w3[0]
	v.now = v.now.Add(10 * 24 * time.Hour)
	v.add(1) // version 4
	// Day 1 is now in an 8-day block (a new sidecar), the new file in
	// today's; b's tombstone has expired (7 days): no tombstone sidecar.
	w4 := v.checkpoint()
	if len(w4) != 3 {
		t.Fatalf("fourth checkpoint wrote %v", w4)
	}
	_ = a
	old := v.now.Add(-10 * 24 * time.Hour)
	for ver := int64(0); ver <= 3; ver++ {
		age(t, l, delta.CommitName("t", ver), old)
		if ver >= 1 {
			age(t, l, delta.CheckpointName("t", ver), old)
		}
	}
	for _, s := range []string{s1, s2, t3} {
		age(t, l, s, old)
	}
	orphanOld, orphanNew := "t/_delta_log/_sidecars/0a-orphan.parquet", "t/_delta_log/_sidecars/0b-orphan.parquet"
	for _, o := range []string{orphanOld, orphanNew} {
		if err := l.Put(ctx, o, []byte("PAR1")); err != nil {
			t.Fatal(err)
		}
	}
	age(t, l, orphanOld, old)
	if _, err := v.tb.CleanupLog(ctx, 5*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{s1: true, s2: false, t3: true, orphanOld: false, orphanNew: true,
		delta.CheckpointName("t", 1): false, delta.CheckpointName("t", 2): false, delta.CheckpointName("t", 3): true} {
		if got := exists(t, l, name); got != want {
			t.Errorf("%s: exists %v, want %v", name, got, want)
		}
	}
	for _, s := range w4 {
		if !exists(t, l, s) {
			t.Errorf("%s of the newest checkpoint deleted", s)
		}
	}
	for ver := int64(3); ver <= 4; ver++ {
		if _, err := delta.LoadVersion(ctx, l, "t", ver); err != nil {
			t.Errorf("version %d after cleanup: %v", ver, err)
		}
	}
	v.verify()
}

// TestCheckpointPolicyOfExistingTable: a classic table stays classic when
// opened with the v2 policy (its readers may not read V2 checkpoints); a
// table with the feature but delta.checkpointPolicy=classic gets V1-spec
// checkpoints, which the protocol allows.
func TestCheckpointPolicyOfExistingTable(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	tb, err := delta.Open[schema.SilverRow](ctx, l, "c", delta.Options{CheckpointInterval: 1000})
	if err != nil {
		t.Fatal(err)
	}
	tb, err = delta.Open[schema.SilverRow](ctx, l, "c", delta.Options{CheckpointInterval: 1000, CheckpointPolicy: delta.CheckpointV2})
	if err != nil {
		t.Fatal(err)
	}
	a, err := delta.WriteFile(ctx, tb, []schema.SilverRow{{Device: "d"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Commit(ctx, []delta.Action{{Add: &a}}, "WRITE"); err != nil {
		t.Fatal(err)
	}
	if err := tb.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if p := tb.Snapshot().Protocol; p.MinReaderVersion != 1 || tb.CheckpointStats().Sidecars != 0 || len(sidecarsOf(t, l, "c")) != 0 {
		t.Fatalf("existing classic table: protocol %+v, %d sidecars", p, tb.CheckpointStats().Sidecars)
	}
	// The feature, and the policy set back to classic.
	v := newV2Table(t, l)
	v.add(2)
	md := v.tb.Snapshot().Metadata
	md.Configuration = map[string]string{delta.PropCheckpointPolicy: delta.CheckpointClassic}
	if _, err := v.tb.Commit(ctx, []delta.Action{{MetaData: &md}}, "SET TBLPROPERTIES"); err != nil {
		t.Fatal(err)
	}
	w := v.checkpoint()
	if len(w) != 1 || w[0] != delta.CheckpointName("t", v.tb.Snapshot().Version) || len(sidecarsOf(t, l, "t")) != 0 {
		t.Fatalf("v2Checkpoint table with the classic policy: checkpoint wrote %v", w)
	}
	v.verify()
	if _, err := delta.Open[schema.SilverRow](ctx, l, "x", delta.Options{CheckpointPolicy: "v3"}); err == nil {
		t.Fatal("an unknown checkpoint policy was accepted")
	}
}

func sidecarsOf(t *testing.T, l lake.Lake, table string) []lake.Object {
	t.Helper()
	objs, err := l.List(t.Context(), table+"/_delta_log/_sidecars/")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// BenchmarkLoadCheckpoint: delta.Load of a table with 30 days of 24 files
// a day and 300 tombstones, from a classic checkpoint and from a V2 one
// (a sidecar a day, one of tombstones).
func BenchmarkLoadCheckpoint(b *testing.B) {
	for _, policy := range []string{delta.CheckpointClassic, delta.CheckpointV2} {
		b.Run(policy, func(b *testing.B) {
			ctx := b.Context()
			l, err := lake.NewLocal(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			tb, err := delta.Open[schema.SilverRow](ctx, l, "t", delta.Options{Now: func() time.Time { return now },
				CheckpointInterval: 1 << 30, CheckpointPolicy: policy})
			if err != nil {
				b.Fatal(err)
			}
			for d := 0; d < 30; d++ {
				var actions []delta.Action
				for h := 0; h < 24; h++ {
					a, err := delta.WriteFile(ctx, tb, []schema.SilverRow{{Device: "d", WindowStart: now.UnixMicro()}}, nil)
					if err != nil {
						b.Fatal(err)
					}
					actions = append(actions, delta.Action{Add: &a})
				}
				if d == 29 {
					for i := 0; i < 300; i++ {
						actions = append(actions, delta.Action{Remove: &delta.RemoveFile{Path: fmt.Sprintf("gone-%d.parquet", i), DeletionTimestamp: now.UnixMilli()}})
					}
				}
				if _, err := tb.Commit(ctx, actions, "WRITE"); err != nil {
					b.Fatal(err)
				}
				if err := tb.Checkpoint(ctx); err != nil {
					b.Fatal(err)
				}
				now = now.Add(24 * time.Hour)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := delta.Load(ctx, l, "t"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(tb.CheckpointStats().Bytes), "checkpoint_bytes")
		})
	}
}
