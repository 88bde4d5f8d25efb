package clock

import (
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestWallMinusMono(t *testing.T) {
	a := WallMinusMonoUS()
	b := WallMinusMonoUS()
	// Both clocks advance together: the offset is stable to well under a
	// second unless the wall clock is stepped between the two calls.
	if d := a - b; d > 1e6 || d < -1e6 {
		t.Fatalf("offset moved by %d µs between two calls", d)
	}
	// wall − mono is a time before now (the boot time, for Linux).
	if now := time.Now().UnixMicro(); a > now {
		t.Fatalf("wall-minus-mono %d is after now %d", a, now)
	}
}

// TestSyncedMatchesTimedatectl compares with systemd's view when available.
func TestSyncedMatchesTimedatectl(t *testing.T) {
	if runtime.GOOS != "linux" {
		if Synced() {
			t.Fatal("Synced is true on a platform without adjtimex")
		}
		return
	}
	got := Synced()
	out, err := exec.Command("timedatectl", "show", "-p", "NTPSynchronized", "--value").Output()
	if err != nil {
		t.Logf("timedatectl not usable here (%v); Synced() = %v", err, got)
		return
	}
	want := strings.TrimSpace(string(out)) == "yes"
	if got != want {
		t.Fatalf("Synced() = %v, timedatectl NTPSynchronized = %v", got, want)
	}
}

// BenchmarkWallMinusMono: the sampler asks for the offset on every reading
// (to cut a batch at a wall-clock step), 400 times a second.
func BenchmarkWallMinusMono(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = WallMinusMonoUS()
	}
}
