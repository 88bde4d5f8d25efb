package rollup_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/rollup"
	"github.com/pilake/pilake/collector/schema"
)

// TestTierTablesBounded: tier tables take the options they are given (the
// collector passes the stages' retention properties and V2 checkpoints),
// and over days of simulated time the files compaction replaced are
// vacuumed and the log is cleaned up past that retention, so a tier's
// files on disk stay bounded by its live files plus the retention window.
func TestTierTablesBounded(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, err := lake.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Simulated time starts at the real time and runs ahead of it: the
	// local lake's modification times (log cleanup compares them with the
	// clock) stay near the start.
	now := time.Now().UTC().Truncate(time.Hour)
	clock := func() time.Time { return now }
	props := delta.Retention{DeletedFiles: 2 * time.Hour, Log: 3 * time.Hour, CheckpointInterval: 20}.Properties()
	silver, err := delta.Open[schema.SilverRow](ctx, l, schema.Silver, delta.Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	upkeep := &countingLock{}
	roller := rollup.New(l, rollup.Options{Grace: 30 * time.Second, CompactEvery: 4, Now: clock, VacuumInterval: time.Hour, LogCleanupInterval: time.Hour, UpkeepLock: upkeep,
		Table: delta.Options{Properties: props, CheckpointBySize: true, CheckpointPolicy: delta.CheckpointV2}})
	r := rand.New(rand.NewPCG(3, 4))
	countFiles := func(table string) (data, logs int) {
		objs, err := l.List(ctx, table+"/")
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			switch {
			case strings.Contains(o.Name, "/_delta_log/"):
				logs++
			case strings.HasSuffix(o.Name, ".parquet"):
				data++
			}
		}
		return
	}
	var peak [2]int
	const step = 10 * time.Minute
	for i := 0; i < 6*24*2; i++ { // two simulated days, an epoch of silver every 10 minutes
		var rows []schema.SilverRow
		ws := now.Add(-step).UnixMicro()
		for k := int64(0); k < int64(step/time.Second); k += 10 {
			rows = append(rows, silverRow(r, "dev-a", ws+k*sec))
		}
		add, err := delta.WriteFile(ctx, silver, rows, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := silver.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
		if _, err := roller.Step(ctx); err != nil {
			t.Fatal(err)
		}
		if i >= 6*24 { // the second day: retention windows have filled
			d, g := countFiles(schema.Silver10s)
			peak = [2]int{max(peak[0], d), max(peak[1], g)}
		}
		now = now.Add(step)
	}
	snap, err := delta.Load(ctx, l, schema.Silver10s)
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Metadata.Configuration[delta.PropDeletedFileRetention]; got != props[delta.PropDeletedFileRetention] {
		t.Fatalf("tier table's %s = %q, want %q (the options given)", delta.PropDeletedFileRetention, got, props[delta.PropDeletedFileRetention])
	}
	if snap.Metadata.Configuration[delta.PropCheckpointPolicy] != delta.CheckpointV2 {
		t.Fatalf("tier table's checkpoint policy %q, want v2", snap.Metadata.Configuration[delta.PropCheckpointPolicy])
	}
	// 288 commits wrote 288 files (and compaction more): without vacuum
	// and log cleanup day 2 ends with them all on disk (336 data files,
	// 715 log objects when this test was written); with them, live files
	// plus ~3 h of replaced ones (2 h retention, vacuum hourly here) and
	// ~3 h of log plus checkpoints (48 and 91).
	live := snap.NumFiles()
	if peak[0] > 72 {
		t.Errorf("silver_10s: up to %d data files on disk for %d live: replaced files are not vacuumed", peak[0], live)
	}
	if peak[1] > 150 {
		t.Errorf("silver_10s: up to %d objects in _delta_log during day 2: the log is not cleaned up", peak[1])
	}
	// Each tier's pass ran under the upkeep lock (the stages' compaction
	// takes it too).
	if n := upkeep.n.Load(); n != 6*24*2*3 {
		t.Errorf("the upkeep lock was taken %d times in %d passes of 3 tiers", n, 6*24*2)
	}
	// The roller follows the source files it may still read, not silver's
	// 288 (one per commit, never compacted here).
	if n := roller.Following(schema.Silver10s); n == 0 || n > 4 {
		t.Errorf("silver_10s follows %d of silver's files in memory; want the few not behind its frontier", n)
	}
	t.Logf("silver_10s: %d live files, at most %d data files and %d log objects on disk during day 2", live, peak[0], peak[1])
}

// countingLock is a sync.Locker that counts how often it was taken.
type countingLock struct {
	mu sync.Mutex
	n  atomic.Int64
}

func (l *countingLock) Lock()   { l.mu.Lock(); l.n.Add(1) }
func (l *countingLock) Unlock() { l.mu.Unlock() }
