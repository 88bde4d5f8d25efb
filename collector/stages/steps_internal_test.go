package stages

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/internal/clock"
)

// lakeState is every object of a lake and a hash of its content.
func lakeState(t *testing.T, l lake.Lake) map[string][32]byte {
	t.Helper()
	objs, err := l.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][32]byte{}
	for _, o := range objs {
		data, err := l.Get(t.Context(), o.Name)
		if err != nil {
			t.Fatal(err)
		}
		out[o.Name] = sha256.Sum256(data)
	}
	return out
}

// TestCommitStepsAlone runs an epoch's commit steps one at a time on a
// fresh lake, checks what each one did, then runs it a second time and
// checks that the second run changed nothing: neither the lake, nor the
// committer, nor the epoch's recorded results, nor the counters.
func TestCommitStepsAlone(t *testing.T) {
	ctx := t.Context()
	l, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p, err := New(l, Options{MaxSkew: -1, CompactEvery: 3, Clock: clock.NewFake(now)})
	if err != nil {
		t.Fatal(err)
	}
	_, c, err := p.recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Epoch 3 of a run: epoch 1's state is there to be deleted, epoch 2's
	// gold is staged, epoch 3 is the final one (gold is committed).
	const n = 3
	t0 := now.UnixMicro()
	for _, name := range []string{checkpointName(1), devicesName(1)} {
		if err := l.Put(ctx, name, []byte("old state")); err != nil {
			t.Fatal(err)
		}
	}
	staged := []schema.GoldRow{{Device: "dev-a", WindowStart: t0 - 1_000_000, N: 8, Windows: 1, TempC: 20}}
	data, _, err := delta.EncodeParquet(staged, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Put(ctx, goldStageName(2), data); err != nil {
		t.Fatal(err)
	}
	c.goldStaged, c.goldRows = []string{goldStageName(2)}, staged

	bw := delta.NewBronzeWriter(false)
	readings := []wire.Reading{{TimeUS: t0, Temp: 2000, Press: 101325 * 256, Hum: 40 * 1024, Fresh: true}, {TimeUS: t0 + 2500, Temp: 2001, Press: 101325 * 256, Hum: 40 * 1024}}
	bw.Write(readings, &schema.BronzeRow{Device: "dev-a", Boot: 1, Seq: 7, ReceivedAt: t0 + 5000, Source: "mqtt"})
	devices := appendDevices(nil, map[string]*device{})
	e := &epoch{n: n, bronze: bw, rows: 2,
		silver: []schema.SilverRow{{Device: "dev-a", WindowStart: t0 - 1_000_000, WindowEnd: t0, Count: 3}},
		late:   []schema.SilverLateRow{{BronzeRow: schema.BronzeRow{Device: "dev-a", TS: t0 - 30_000_000}, WindowStart: t0 - 30_000_000, Watermark: t0 - 10_000_000}},
		gold:   []schema.GoldRow{{Device: "dev-a", WindowStart: t0, N: 8, Windows: 2, TempC: 20.5}, {Device: "dev-b", WindowStart: t0, N: 8, Windows: 1, TempC: 19}},
		quar: []quarantined{{name: "landing/-seg/x", batch: wire.Batch{DeviceID: "dev-a", BootID: 1, Seq: 8}, readings: readings[:1],
			recv: now, source: "mqtt", reason: "skew"}},
		landed: json.RawMessage(`{"dev-a/1":[[7,7]]}`), segments: json.RawMessage(`{}`), devices: devices,
		final: true, goldN: 2, adds: map[string][]delta.AddFile{}}

	// Gold on a new lake is one time-ordered file a commit (a lake whose
	// gold is partitioned by device: a file per device).
	goldFiles := 1
	has := func(name string) bool {
		_, err := l.Get(ctx, name)
		return err == nil
	}
	txn := func(table string) int64 {
		snap, err := delta.Load(ctx, l, table)
		if err != nil {
			t.Fatal(err)
		}
		v, ok := snap.TxnVersion(AppID)
		if !ok {
			return -1
		}
		return v
	}
	file := func(table string) func(t *testing.T) {
		return func(t *testing.T) {
			if len(e.adds[table]) != 1 || !has(table+"/"+e.adds[table][0].Path) {
				t.Fatalf("%s: adds %+v, file not in the lake", table, e.adds[table])
			}
		}
	}
	committed := func(table string) func(t *testing.T) {
		return func(t *testing.T) {
			if v := txn(table); v != n {
				t.Fatalf("%s txn version %d, want %d", table, v, n)
			}
		}
	}
	checks := map[string]func(t *testing.T){
		"quarantine": func(t *testing.T) {
			name := schema.Quarantine + "skew/" + e.quar[0].batch.Key() + ".json"
			if !has(name) || !has(name+".reason.json") {
				t.Fatalf("%s or its reason missing", name)
			}
		},
		"bronze file":      file(schema.Bronze),
		"silver file":      file(schema.Silver),
		"silver_late file": file(schema.SilverLate),
		"stage gold": func(t *testing.T) {
			if !has(goldStageName(n)) || len(c.goldRows) != 3 || e.gold != nil ||
				!slices.Equal(c.goldStaged, []string{goldStageName(2), goldStageName(n)}) {
				t.Fatalf("staged %v, %d rows, epoch's gold %v", c.goldStaged, len(c.goldRows), e.gold)
			}
		},
		"gold files": func(t *testing.T) {
			if len(e.adds[schema.Gold]) != goldFiles || c.goldStaged != nil || c.goldRows != nil ||
				!slices.Equal(e.goldFlushed, []string{goldStageName(2), goldStageName(n)}) {
				t.Fatalf("gold adds %d, staged %v, flushed %v", len(e.adds[schema.Gold]), c.goldStaged, e.goldFlushed)
			}
		},
		"sync files": func(t *testing.T) {},
		"devices state": func(t *testing.T) {
			if got, err := l.Get(ctx, devicesName(n)); err != nil || !bytes.Equal(got, devices) {
				t.Fatalf("devices state: %v", err)
			}
		},
		"epoch state": func(t *testing.T) {
			data, err := l.Get(ctx, checkpointName(n))
			if err != nil {
				t.Fatal(err)
			}
			var cp checkpoint
			if err := json.Unmarshal(data, &cp); err != nil {
				t.Fatal(err)
			}
			if cp.Epoch != n || len(cp.Pending[schema.Silver]) != 1 || len(cp.Pending[schema.Gold]) != goldFiles || cp.GoldStaged != nil {
				t.Fatalf("state %+v", cp)
			}
		},
		"commit bronze": func(t *testing.T) {
			committed(schema.Bronze)(t)
			if v := txn(schema.Silver); v != -1 {
				t.Fatalf("silver committed (txn %d) with bronze", v)
			}
		},
		"commit silver":      committed(schema.Silver),
		"commit silver_late": committed(schema.SilverLate),
		"commit gold":        committed(schema.Gold),
		"delete staged gold": func(t *testing.T) {
			if has(goldStageName(2)) || has(goldStageName(n)) {
				t.Fatal("staged gold left")
			}
		},
		"delete old state": func(t *testing.T) {
			if has(checkpointName(1)) || has(devicesName(1)) || !has(checkpointName(n)) || !has(devicesName(n)) {
				t.Fatal("old state left, or this epoch's deleted")
			}
		},
		"count": func(t *testing.T) {
			if s := p.Stats(); s.Epochs != 1 || s.SilverRows != 1 || s.GoldRows != 2 {
				t.Fatalf("stats %+v", s)
			}
		},
		"maintenance": func(t *testing.T) {
			if c.compactions != 1 {
				t.Fatalf("%d compaction rounds, want 1", c.compactions)
			}
		},
	}
	if got, want := slices.Sorted(maps.Keys(checks)), slices.Sorted(slices.Values(CommitStepNames())); !slices.Equal(got, want) {
		t.Fatalf("checks for %v, steps %v", got, want)
	}
	type committerState struct {
		staged  string
		rows    int
		adds    string
		flushed string
		stats   Stats
	}
	state := func() committerState {
		adds, _ := json.Marshal(e.adds)
		return committerState{strings.Join(c.goldStaged, ","), len(c.goldRows), string(adds), strings.Join(e.goldFlushed, ","), p.Stats()}
	}
	for i, s := range commitSteps {
		before := lakeState(t, l)
		if err := s.run(c, ctx, e); err != nil {
			t.Fatalf("step %q: %v", s.name, err)
		}
		t.Run(strings.ReplaceAll(s.name, " ", "_"), checks[s.name])
		if s.name != "sync files" && s.name != "count" && s.name != "maintenance" && maps.Equal(before, lakeState(t, l)) {
			t.Errorf("step %d %q changed nothing in the lake", i, s.name)
		}
		lakeOnce, once := lakeState(t, l), state()
		if err := s.run(c, ctx, e); err != nil {
			t.Fatalf("step %q again: %v", s.name, err)
		}
		if !maps.Equal(lakeOnce, lakeState(t, l)) {
			t.Errorf("step %q run again changed the lake", s.name)
		}
		if again := state(); again != once {
			t.Errorf("step %q run again changed the committer or the epoch:\n%+v\n%+v", s.name, once, again)
		}
	}
}
