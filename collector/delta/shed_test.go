package delta_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// TestWriterShedsColdStatistics: a writer drops the statistics of files
// written before yesterday once a checkpoint holds them in a sidecar of a
// closed block of days (and then the files: seal.go), and reads them back whenever it writes those files again:
// when a block grows by a day, after another writer removes one of them,
// after the Table is reopened, and in a classic checkpoint once the policy
// changes. Every checkpoint loads with every file's statistics as written.
func TestWriterShedsColdStatistics(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	v := newV2Table(t, l)
	stats := map[string]string{} // path → statistics as written
	var tombs []string
	addDay := func(tagged bool) delta.AddFile {
		t.Helper()
		a, err := delta.WriteFile(ctx, v.tb, []schema.SilverRow{{Device: "d", WindowStart: v.now.UnixMicro()}, {Device: "d", WindowStart: v.now.UnixMicro() + 1}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tagged {
			a.DataChange = false
			a.Tags = map[string]string{delta.TagCompaction: delta.TierDay}
		}
		if _, err := v.tb.Commit(ctx, []delta.Action{{Add: &a}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
		v.live[a.Path] = true
		stats[a.Path] = a.Stats
		return a
	}
	check := func(when string) (shed int) {
		t.Helper()
		v.verify(tombs...)
		loadsWithStats(t, l, when, stats)
		yesterday := v.now.UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour).UnixMilli()
		for _, f := range v.tb.Snapshot().Files() {
			if f.Stats == "" {
				shed++
				if f.ModificationTime >= yesterday {
					t.Fatalf("%s: the writer dropped the statistics of %s, written since yesterday: compaction may still rewrite it", when, f.Path)
				}
			}
		}
		// Files sealed away (seal.go) are not in memory at all.
		return shed + v.tb.Snapshot().NumFiles() - len(v.tb.Snapshot().Files())
	}
	var first []delta.AddFile
	for d := range 12 {
		first = append(first, addDay(true))
		addDay(false)
		v.checkpoint()
		shed := check("day " + time.Duration(d).String())
		if d >= 10 && shed == 0 {
			t.Fatalf("day %d: no statistics dropped (files of 12 days, 2 recent)", d)
		}
		v.now = v.now.Add(24 * time.Hour)
	}
	if check("before the remove") == 0 {
		t.Fatal("nothing shed")
	}
	// Another writer's remove of a cold file: its block is written again.
	v.remove(first[1])
	tombs = append(tombs, first[1].Path)
	v.checkpoint()
	check("after a remove")
	// Reopened: the Table reads the checkpoint and sheds again.
	v.open()
	if check("reopened") == 0 {
		t.Fatal("a reopened Table keeps every statistic")
	}
	v.now = v.now.Add(24 * time.Hour)
	addDay(true)
	v.checkpoint()
	check("reopened, a day later")
	// Classic checkpoints: every statistic back in memory and in the file.
	md := v.tb.Snapshot().Metadata
	md.Configuration = maps.Clone(md.Configuration)
	md.Configuration[delta.PropCheckpointPolicy] = delta.CheckpointClassic
	if _, err := v.tb.Commit(ctx, []delta.Action{{MetaData: &md}}, "SET TBLPROPERTIES"); err != nil {
		t.Fatal(err)
	}
	v.checkpoint()
	if n := check("classic"); n != 0 {
		t.Fatalf("after a classic checkpoint %d files lack statistics in memory", n)
	}
}

// TestForgetStats: a reader's snapshot that follows only the files keeps
// neither statistics nor tombstones through LoadAfter and Update, and
// Update returns the new commits' actions with their statistics.
func TestForgetStats(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	v := newV2Table(t, l)
	v.add(3)
	snap, err := delta.Load(ctx, l, "t")
	if err != nil {
		t.Fatal(err)
	}
	snap.ForgetStats()
	check := func(s *delta.Snapshot, files int) {
		t.Helper()
		n := 0
		for f := range s.All() {
			n++
			if f.Stats != "" || f.PartitionValues != nil {
				t.Fatalf("%s kept stats %q, partition values %v", f.Path, f.Stats, f.PartitionValues)
			}
		}
		if n != files || len(s.Files()) != files || s.NumFiles() != files {
			t.Fatalf("%d files, want %d", n, files)
		}
		if k := len(s.Tombstones()); k != 0 {
			t.Fatalf("%d tombstones in a snapshot that follows only the files", k)
		}
	}
	check(snap, 3)
	added := v.add(1)[0]
	v.remove(v.add(1)[0])
	next, err := delta.LoadAfter(ctx, l, "t", snap)
	if err != nil {
		t.Fatal(err)
	}
	check(next, 4)
	check(snap, 3) // LoadAfter left it alone
	commits, err := snap.Update(ctx, l, "t")
	if err != nil {
		t.Fatal(err)
	}
	check(snap, 4)
	var first *delta.AddFile
	if len(commits) == 3 {
		for _, a := range commits[0] {
			if a.Add != nil {
				first = a.Add
			}
		}
	}
	if first == nil || first.Path != added.Path || first.Stats != added.Stats {
		t.Fatalf("Update returned %d commits; the first one's add should be %s with its stats", len(commits), added.Path)
	}
}

// TestCleanupLogChecksTheCutoffCheckpoint: log cleanup deletes nothing when
// the checkpoint that would replace the commits cannot be read (a broken
// sidecar of a V2 checkpoint), and goes on once it can.
func TestCleanupLogChecksTheCutoffCheckpoint(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	v := newV2Table(t, l)
	v.add(6)
	v.checkpoint()
	v.add(3)
	side := sidecars(t, l)
	if len(side) != 1 {
		t.Fatalf("sidecars %v, want one", side)
	}
	good, err := l.Get(ctx, side[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Put(ctx, side[0], []byte("not parquet")); err != nil {
		t.Fatal(err)
	}
	old := v.now.Add(-60 * 24 * time.Hour) // the table's clock
	for ver := int64(0); ver <= 8; ver++ {
		age(t, l, delta.CommitName("t", ver), old)
	}
	if n, err := v.tb.CleanupLog(ctx, 30*24*time.Hour); err == nil || n != 0 {
		t.Fatalf("CleanupLog with a broken cutoff checkpoint deleted %d, err %v; want an error and nothing deleted", n, err)
	}
	if !exists(t, l, delta.CommitName("t", 0)) {
		t.Fatal("commit 0 deleted")
	}
	if err := l.Put(ctx, side[0], good); err != nil {
		t.Fatal(err)
	}
	if n, err := v.tb.CleanupLog(ctx, 30*24*time.Hour); err != nil || n == 0 {
		t.Fatalf("CleanupLog after the sidecar came back deleted %d, %v", n, err)
	}
	v.verify()
}

// TestWriterSealsClosedSidecars: a writer keeps in memory none of the files
// of a closed block of days that compaction wrote (sealed sidecars), so its
// memory stops growing with the history, and its state stays exact: every
// checkpoint and version checksum matches the log replayed, through 8-day
// blocks joining a 64-day block, another writer's remove of a sealed file
// and add of a new one, a reopen, vacuum (which must keep sealed files) and
// a switch to classic checkpoints.
func TestWriterSealsClosedSidecars(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	v := newV2Table(t, l)
	stats := map[string]string{}
	var all []delta.AddFile
	addDay := func() {
		t.Helper()
		for i := range 2 {
			a, err := delta.WriteFile(ctx, v.tb, []schema.SilverRow{{Device: "d", WindowStart: v.now.UnixMicro() + int64(i)}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			a.DataChange = false
			a.Tags = map[string]string{delta.TagCompaction: delta.TierDay}
			if _, err := v.tb.Commit(ctx, []delta.Action{{Add: &a}}, "OPTIMIZE"); err != nil {
				t.Fatal(err)
			}
			v.live[a.Path] = true
			stats[a.Path] = a.Stats
			all = append(all, a)
		}
	}
	var tombs []string
	check := func(when string) (inMemory int) {
		t.Helper()
		v.verify(tombs...)
		loadsWithStats(t, l, when, stats)
		if n := v.tb.Snapshot().NumFiles(); n != len(v.live) {
			t.Fatalf("%s: the writer counts %d live files, want %d", when, n, len(v.live))
		}
		ours := map[int64]bool{}
		for ver := int64(0); ver <= v.tb.Snapshot().Version; ver++ {
			ours[ver] = true
		}
		checkChecksums(t, l, "t", ours)
		return len(v.tb.Snapshot().Files())
	}
	const days = 40 // 2026-03-10 + 40 days: the 64-day block of days 20480-20543 closes
	for d := range days {
		addDay()
		v.checkpoint()
		in := check(fmt.Sprintf("day %d", d))
		// Today, yesterday and the open 8-day block stay in memory; the
		// rest is sealed.
		if d >= 12 && in > 2*(2+8) {
			t.Fatalf("day %d: %d files in memory of %d; closed blocks should be sealed", d, in, len(v.live))
		}
		v.now = v.now.Add(24 * time.Hour)
	}
	// The 8-day blocks of the closed 64-day block were merged into one
	// sidecar (read back from their sealed sidecars).
	if g := delta.SidecarGroups(v.tb.Snapshot()); !slices.Contains(g, "64d-320") || slices.Contains(g, "8d-2565") {
		t.Fatalf("sidecar groups %v: want the 64-day block 320 (days 20480-20543) in one sidecar", g)
	}
	// Another writer removes a sealed file and adds a new one.
	other, err := delta.Open[schema.SilverRow](ctx, l, "t", delta.Options{Now: func() time.Time { return v.now },
		CheckpointInterval: 1000, CheckpointPolicy: delta.CheckpointV2})
	if err != nil {
		t.Fatal(err)
	}
	gone := all[3]
	extra, err := delta.WriteFile(ctx, other, []schema.SilverRow{{Device: "e", WindowStart: v.now.UnixMicro()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Commit(ctx, []delta.Action{{Remove: &delta.RemoveFile{Path: gone.Path, DeletionTimestamp: v.now.UnixMilli(),
		ExtendedFileMetadata: true, Size: gone.Size, PartitionValues: map[string]string{}}}, {Add: &extra}}, "DELETE"); err != nil {
		t.Fatal(err)
	}
	delete(v.live, gone.Path)
	v.live[extra.Path] = true
	stats[extra.Path] = extra.Stats
	tombs = append(tombs, gone.Path)
	if err := v.tb.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	v.checkpoint()
	check("after another writer's remove")
	// Vacuum keeps every sealed file.
	v.now = v.now.Add(30 * 24 * time.Hour)
	for _, f := range all {
		if exists(t, l, "t/"+f.Path) {
			age(t, l, "t/"+f.Path, v.now.Add(-40*24*time.Hour))
		}
	}
	if _, err := v.tb.Vacuum(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	tombs = nil // expired by the next checkpoint
	if exists(t, l, "t/"+gone.Path) {
		t.Fatalf("vacuum kept %s, removed 30 days ago", gone.Path)
	}
	for _, f := range all {
		if v.live[f.Path] && !exists(t, l, "t/"+f.Path) {
			t.Fatalf("vacuum deleted live file %s", f.Path)
		}
	}
	v.open()
	addDay()
	v.checkpoint()
	if in := check("reopened, a month later"); in > 2*(2+8)+1 {
		t.Fatalf("reopened: %d files in memory of %d", in, len(v.live))
	}
	// Classic checkpoints: every file back in memory, with its statistics.
	md := v.tb.Snapshot().Metadata
	md.Configuration = maps.Clone(md.Configuration)
	md.Configuration[delta.PropCheckpointPolicy] = delta.CheckpointClassic
	if _, err := v.tb.Commit(ctx, []delta.Action{{MetaData: &md}}, "SET TBLPROPERTIES"); err != nil {
		t.Fatal(err)
	}
	v.checkpoint()
	if in := check("classic"); in != len(v.live) {
		t.Fatalf("classic: %d files in memory, want all %d", in, len(v.live))
	}
}

// loadsWithStats loads table "t" and checks every live file's statistics
// are those written (stats: path → statistics).
func loadsWithStats(t *testing.T, l lake.Lake, when string, stats map[string]string) {
	t.Helper()
	snap, err := delta.Load(t.Context(), l, "t")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range snap.Files() {
		if f.Stats != stats[f.Path] {
			t.Fatalf("%s: %s loads with stats %q, want %q", when, f.Path, f.Stats, stats[f.Path])
		}
	}
}
