package stages_test

import (
	"errors"
	"os/exec"
	"reflect"
	"syscall"
	"testing"

	"github.com/pilake/pilake/collector/stages"
)

// crashEpoch is the epoch whose commit TestCrashBetweenSteps interrupts: a
// few epochs in, so there is state, staged gold and an earlier epoch's state
// to delete.
const crashEpoch = 4

// TestCrashBetweenSteps kills a collector process (SIGKILL) right after each
// step of an epoch's commit in turn — so between every pair of steps, and
// after the last — restarts it, and checks that the tables end as those of
// an uninterrupted run: every reading in bronze once, the same silver,
// silver_late and gold.
func TestCrashBetweenSteps(t *testing.T) {
	ref := t.TempDir()
	total := landDevices(t, ref, 1)
	if err := startChild(t, "finish", ref).Wait(); err != nil {
		t.Fatalf("uninterrupted run: %v", err)
	}
	want := readTables(t, ref)
	if len(want.bronze) != total {
		t.Fatalf("uninterrupted run: bronze %d rows, want %d", len(want.bronze), total)
	}
	steps := stages.CommitStepNames()
	if len(steps) < 10 {
		t.Fatalf("only %d commit steps: %v", len(steps), steps)
	}
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if landDevices(t, dir, 1) != total {
				t.Fatal("landing sets differ")
			}
			err := startChild(t, "finish", dir, "PILAKE_STAGES_CRASH_AFTER="+step).Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("the run was not killed after step %q of epoch %d: %v", step, crashEpoch, err)
			}
			if err := startChild(t, "finish", dir).Wait(); err != nil {
				t.Fatalf("run after the crash: %v", err)
			}
			got := readTables(t, dir)
			checkBronzeOnce(t, got.bronze, total)
			if !rowsEqual(got.silver, want.silver) {
				t.Fatalf("silver differs from the uninterrupted run (%d vs %d rows)", len(got.silver), len(want.silver))
			}
			if !rowsEqual(got.gold, want.gold) {
				t.Fatalf("gold differs from the uninterrupted run (%d vs %d rows)", len(got.gold), len(want.gold))
			}
			if got.late != want.late {
				t.Fatalf("silver_late %d rows, want %d", got.late, want.late)
			}
		})
	}
}

// rowsEqual compares table rows by value (nullable columns are pointers).
func rowsEqual[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}
