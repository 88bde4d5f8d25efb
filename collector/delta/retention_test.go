package delta_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/schema"
)

func TestParseInterval(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"interval 7 days", 7 * 24 * time.Hour, true},
		{"interval 1 day 12 hours", 36 * time.Hour, true},
		{"30 days", 30 * 24 * time.Hour, true},
		{"INTERVAL 2 WEEKS", 14 * 24 * time.Hour, true},
		{"interval 90 minutes", 90 * time.Minute, true},
		{"interval", 0, false},
		{"interval 7", 0, false},
		{"interval seven days", 0, false},
		{"interval 7 fortnights", 0, false},
		{"interval -1 days", 0, false},
		{"interval 99999999999999999 weeks", 0, false},
	} {
		got, err := delta.ParseInterval(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseInterval(%q) = %v, %v; want %v (ok %v)", c.in, got, err, c.want, c.ok)
		}
	}
	for _, d := range []time.Duration{48 * time.Hour, 36 * time.Hour, 90 * time.Minute, 7 * 24 * time.Hour} {
		s := delta.FormatInterval(d)
		if got, err := delta.ParseInterval(s); err != nil || got != d {
			t.Errorf("FormatInterval(%v) = %q, parsed back as %v, %v", d, s, got, err)
		}
	}
	if s := delta.FormatInterval(48 * time.Hour); s != "interval 2 days" {
		t.Errorf("FormatInterval(48h) = %q", s)
	}
}

// TestRetentionProperties: a new table gets the Options' properties, a
// table without them gets them added (its own values kept), and the
// table's values are what the Table uses.
func TestRetentionProperties(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	props := delta.Retention{DeletedFiles: 48 * time.Hour, Log: 72 * time.Hour, CheckpointInterval: 50}.Properties()
	tb, err := delta.Open[schema.SilverRow](ctx, l, schema.Silver, delta.Options{Properties: props})
	if err != nil {
		t.Fatal(err)
	}
	r := tb.Snapshot().Retention()
	if r.DeletedFiles != 48*time.Hour || r.Log != 72*time.Hour || r.CheckpointInterval != 50 {
		t.Fatalf("new table's retention %+v", r)
	}
	// An older table: no properties, one set by hand to another value.
	old, err := delta.Open[schema.SilverRow](ctx, l, "old", delta.Options{Properties: map[string]string{delta.PropLogRetention: "interval 10 days"}})
	if err != nil {
		t.Fatal(err)
	}
	v := old.Snapshot().Version
	old, err = delta.Open[schema.SilverRow](ctx, l, "old", delta.Options{Properties: props})
	if err != nil {
		t.Fatal(err)
	}
	if old.Snapshot().Version != v+1 {
		t.Fatalf("properties added at version %d, want %d", old.Snapshot().Version, v+1)
	}
	snap, err := delta.Load(ctx, l, "old")
	if err != nil {
		t.Fatal(err)
	}
	r = snap.Retention()
	if r.DeletedFiles != 48*time.Hour || r.Log != 10*24*time.Hour || r.CheckpointInterval != 50 {
		t.Fatalf("upgraded table's retention %+v", r)
	}
	// Opening again changes nothing.
	if again, err := delta.Open[schema.SilverRow](ctx, l, "old", delta.Options{Properties: props}); err != nil || again.Snapshot().Version != v+1 {
		t.Fatalf("reopen: %v, version %d", err, again.Snapshot().Version)
	}
	checkLog(t, l, "old")
	// Without properties: Delta's defaults.
	r = (&delta.Snapshot{}).Retention()
	if r.DeletedFiles != 7*24*time.Hour || r.Log != 30*24*time.Hour || r.CheckpointInterval != 10 {
		t.Fatalf("defaults %+v", r)
	}
}

// TestCheckpointCarriesTombstones: a Table holds only the tombstones since
// its last checkpoint; later checkpoints carry the older ones from the file,
// drop the expired ones, and a full Load sees exactly the unexpired ones.
func TestCheckpointCarriesTombstones(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	opts := delta.Options{PartitionColumns: []string{"device"}, Now: clock, CheckpointInterval: 1000,
		Properties: delta.Retention{DeletedFiles: 24 * time.Hour}.Properties()}
	tb, err := delta.Open[schema.GoldRow](ctx, l, schema.Gold, opts)
	if err != nil {
		t.Fatal(err)
	}
	// round writes 20 one-row files and compacts them: 20 tombstones.
	round := func(i int) {
		for j := range 20 {
			dev := fmt.Sprintf("d%d", j%2)
			add, err := delta.WriteFile(ctx, tb, []schema.GoldRow{{Device: dev, WindowStart: int64(i*100 + j), N: 8}}, map[string]string{"device": dev})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := delta.Compact[schema.GoldRow](ctx, tb, delta.CompactOptions{MinFiles: 2}); err != nil || n != 20 {
			t.Fatalf("compacted %d, %v", n, err)
		}
	}
	round(0)
	if err := tb.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	// A new Table (a restart) starts lean: the 20 are counted, not held.
	tb, err = delta.Open[schema.GoldRow](ctx, l, schema.Gold, opts)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tb.Snapshot().Tombstones()); n != 0 || tb.Snapshot().NumTombstones() != 20 {
		t.Fatalf("lean snapshot holds %d tombstones, counts %d", n, tb.Snapshot().NumTombstones())
	}
	now = now.Add(13 * time.Hour)
	round(1)
	if err := tb.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	snap, err := delta.Load(ctx, l, schema.Gold)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(snap.Tombstones()); n != 40 || tb.CheckpointStats().Tombstones != 40 {
		t.Fatalf("after 2 rounds: checkpoint has %d tombstones, table counts %d", n, tb.CheckpointStats().Tombstones)
	}
	// 13 h later the first round's tombstones are past the 24 h retention.
	now = now.Add(13 * time.Hour)
	round(2)
	if err := tb.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	snap, err = delta.Load(ctx, l, schema.Gold)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(snap.Tombstones()); n != 40 || tb.Snapshot().NumTombstones() != 40 || len(tb.Snapshot().Tombstones()) != 0 {
		t.Fatalf("after expiry: checkpoint has %d tombstones, table counts %d, holds %d", n, tb.Snapshot().NumTombstones(), len(tb.Snapshot().Tombstones()))
	}
	cutoff := now.Add(-24 * time.Hour).UnixMilli()
	for _, r := range snap.Tombstones() {
		if r.DeletionTimestamp < cutoff {
			t.Fatalf("expired tombstone %s kept", r.Path)
		}
	}
	if snap.NumFiles() != 6 {
		t.Fatalf("%d live files, want 6", snap.NumFiles())
	}
	checkLog(t, l, schema.Gold)
}

// TestCheckpointPolicy: by interval, by size (the commits since the last
// checkpoint must weigh as much as it) and by age.
func TestCheckpointPolicy(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	opts := delta.Options{Now: func() time.Time { return now }, CheckpointBySize: true, CheckpointMaxAge: time.Hour,
		Properties: delta.Retention{CheckpointInterval: 5}.Properties()}
	tb, err := delta.Open[schema.BronzeRow](ctx, l, schema.Bronze, opts)
	if err != nil {
		t.Fatal(err)
	}
	commit := func() {
		t.Helper()
		add, err := delta.WriteFile(ctx, tb, bronzeRows(3, "d", now.UnixMicro()), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		commit()
	}
	// No checkpoint yet: the first is due after 5 commits (the empty table's weighs nothing).
	cp := tb.CheckpointStats()
	if cp.Version != 5 {
		t.Fatalf("first checkpoint at %d, want 5", cp.Version)
	}
	// The checkpoint (5 adds with stats, in Parquet) weighs more than 5
	// commits: the next is due later than 5 commits after it.
	for range 5 {
		commit()
	}
	if got := tb.CheckpointStats().Version; got != 5 {
		t.Fatalf("checkpoint at %d after 5 light commits, want still 5 (checkpoint %d bytes)", got, cp.Bytes)
	}
	n := 0
	for tb.CheckpointStats().Version == 5 && n < 1000 {
		commit()
		n++
	}
	if n == 1000 {
		t.Fatal("no checkpoint after 1000 more commits")
	}
	// By age: one commit an hour later checkpoints.
	v := tb.CheckpointStats().Version
	commit()
	if tb.CheckpointStats().Version != v {
		t.Fatal("checkpoint right after the last one")
	}
	now = now.Add(time.Hour)
	commit()
	if got := tb.CheckpointStats().Version; got != tb.Snapshot().Version {
		t.Fatalf("no checkpoint after an hour: at %d, table at %d", got, tb.Snapshot().Version)
	}
	checkLog(t, l, schema.Bronze)
}
