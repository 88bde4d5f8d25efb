package stages_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
)

// TestMain lets the test binary act as a collector process for the restart
// test: PILAKE_STAGES_CHILD=run runs the pipeline until killed;
// =finish recovers, lands everything and shuts down cleanly.
func TestMain(m *testing.M) {
	if mode := os.Getenv("PILAKE_STAGES_CHILD"); mode != "" {
		if step := os.Getenv("PILAKE_STAGES_CRASH_AFTER"); step != "" {
			// Die (SIGKILL: nothing flushed, no deferred code) right after
			// that commit step of epoch crashEpoch.
			stages.SetAfterStep(func(epoch int64, s string) {
				if epoch == crashEpoch && s == step {
					_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
					select {}
				}
			})
		}
		os.Exit(child(mode, os.Getenv("PILAKE_STAGES_LAKE")))
	}
	os.Exit(m.Run())
}

func childOptions() stages.Options {
	return stages.Options{MaxSkew: -1, MaxEpochRows: 1500, CommitInterval: 20 * time.Millisecond, CompactEvery: 5, CheckpointInterval: 4, GoldInterval: 100 * time.Millisecond}
}

func child(mode, dir string) int {
	l, err := lake.NewLocal(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	p, err := stages.New(l, childOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	if mode == "finish" {
		cancel() // recover, scan landing at shutdown, close all windows, commit
	}
	defer cancel()
	if err := p.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		return 1
	}
	return 0
}

func startChild(t *testing.T, mode, dir string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PILAKE_STAGES_CHILD="+mode, "PILAKE_STAGES_LAKE="+dir)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func landSet(t *testing.T, dir string) int {
	t.Helper()
	return landDevices(t, dir, 3)
}

// landDevices lands the set of landSet for that many devices.
func landDevices(t *testing.T, dir string, devices int) int {
	t.Helper()
	l, err := lake.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	total := 0
	var counter uint64
	for d := range devices {
		for boot := range uint64(2) {
			// A second boot resumes later, as after an agent restart.
			bs := makeBatches(fmt.Sprintf("dev-%d", d), 0xb000+boot, 60, 100, t0+int64(boot)*100_000_000+int64(d)*333, rng)
			for _, b := range bs {
				total += len(b.Readings)
			}
			if boot == 0 {
				// One batch a segment, as an idle Lander (another
				// instance) lands them.
				for _, b := range bs {
					counter++
					recv := time.UnixMicro(b.Readings[0].TimeUS).Add(time.Second)
					landSegment(t, l, inst2, counter, recv, "mqtt", b)
				}
				continue
			}
			// Segments of 12 batches; the first 3 of each are redelivered
			// copies of the previous segment's last 3 (landed again by
			// another process or after a restart).
			for i := 0; i < len(bs); i += 9 {
				counter++
				recv := time.UnixMicro(bs[i].Readings[0].TimeUS).Add(time.Second)
				landSegment(t, l, inst1, counter, recv, "mqtt", bs[max(i-3, 0):min(i+9, len(bs))]...)
			}
		}
	}
	return total
}

type tables struct {
	bronze []schema.BronzeRow
	silver []schema.SilverRow
	gold   []schema.GoldRow
	late   int
}

func readTables(t *testing.T, dir string) tables {
	t.Helper()
	l, err := lake.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	var r tables
	r.bronze = readAll[schema.BronzeRow](t, l, schema.Bronze)
	r.silver = sortSilver(readAll[schema.SilverRow](t, l, schema.Silver))
	r.gold = readAll[schema.GoldRow](t, l, schema.Gold)
	slices.SortFunc(r.gold, func(a, b schema.GoldRow) int {
		if c := strings.Compare(a.Device, b.Device); c != 0 {
			return c
		}
		if a.WindowStart != b.WindowStart {
			return int(a.WindowStart - b.WindowStart)
		}
		return int(a.N - b.N)
	})
	r.late = len(readAll[schema.SilverLateRow](t, l, schema.SilverLate))
	return r
}

// TestRestartSIGKILL kills a collector process at random points while it
// lands a fixed landing/ set (segments of many batches, some batches in two
// of them, and segments of one batch) into the tables, restarts it each time, and
// checks that the final silver and gold equal those of an uninterrupted run
// and that no reading is in bronze twice.
func TestRestartSIGKILL(t *testing.T) {
	ref, killed := t.TempDir(), t.TempDir()
	total := landSet(t, ref)
	if landSet(t, killed) != total {
		t.Fatal("landing sets differ")
	}
	cmd := startChild(t, "finish", ref)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("uninterrupted run: %v", err)
	}
	want := readTables(t, ref)
	if len(want.bronze) != total {
		t.Fatalf("uninterrupted run: bronze %d rows, want %d", len(want.bronze), total)
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	l, err := lake.NewLocal(killed)
	if err != nil {
		t.Fatal(err)
	}
	interrupted := 0
	for i := 0; i < 8; i++ {
		cmd := startChild(t, "run", killed)
		time.Sleep(time.Duration(20+rng.IntN(250)) * time.Millisecond) // a random kill point, not a wait
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		snap, err := delta.Load(t.Context(), l, schema.Bronze)
		if err == nil {
			var n int64
			for _, f := range snap.Files() {
				st, err := f.ParsedStats()
				if err != nil {
					t.Fatal(err)
				}
				n += st.NumRecords
			}
			if n < int64(total) {
				interrupted++
			}
			t.Logf("kill %d: bronze at version %d with %d of %d readings", i, snap.Version, n, total)
		}
	}
	cmd = startChild(t, "finish", killed)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("final run: %v", err)
	}
	got := readTables(t, killed)
	checkBronzeOnce(t, got.bronze, total)
	if !rowsEqual(got.silver, want.silver) {
		t.Fatalf("silver after kills differs from the uninterrupted run (%d vs %d rows)", len(got.silver), len(want.silver))
	}
	if !rowsEqual(got.gold, want.gold) {
		t.Fatalf("gold after kills differs from the uninterrupted run (%d vs %d rows)", len(got.gold), len(want.gold))
	}
	if got.late != want.late {
		t.Fatalf("silver_late %d rows, want %d", got.late, want.late)
	}
	if interrupted == 0 {
		t.Log("warning: no kill landed mid-run this time")
	}
}

// checkBronzeOnce fails unless bronze holds total readings, none twice.
func checkBronzeOnce(t *testing.T, bronze []schema.BronzeRow, total int) {
	t.Helper()
	type rk struct {
		dev       string
		boot, seq int64
		ts        int64
	}
	seen := map[rk]bool{}
	for _, r := range bronze {
		k := rk{r.Device, r.Boot, r.Seq, r.TS}
		if seen[k] {
			t.Fatalf("reading %+v twice in bronze", k)
		}
		seen[k] = true
	}
	if len(bronze) != total {
		t.Fatalf("bronze %d rows, want %d", len(bronze), total)
	}
}
