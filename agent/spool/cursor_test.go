package spool

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pilake/pilake/internal/clock"
)

// TestAckCursorWrittenEverySecond: after a kill -9 (the files as they are,
// no Close), a restart resends at most the last second's acknowledged
// batches, not the last 30 s's (acknowledgements counted once).
func TestAckCursorWrittenEverySecond(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sp, err := Open(Options{Dir: dir, Logger: quiet, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	for seq := uint64(1); seq <= 20; seq++ {
		if _, err := sp.Append(1, seq, 1, []byte{byte(seq)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 { // ten acknowledgements, one every 200 ms
		clk.Advance(200 * time.Millisecond)
		rec, ok, err := sp.TakeOldest()
		if err != nil || !ok {
			t.Fatalf("take %d: %v %v", i, ok, err)
		}
		if _, err := sp.Ack(rec.ID); err != nil {
			t.Fatal(err)
		}
	}
	// "kill -9": copy the directory as it is and open the copy.
	cp := t.TempDir()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() == cursorName+".tmp" || e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cp, e.Name()), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	again, err := Open(Options{Dir: cp, Logger: quiet, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	// Without the cursor written between synced checkpoints (every 30 s)
	// all 20 would be sent again.
	if got := again.Stats().Records; got > 15 || got < 10 {
		t.Fatalf("after the crash %d batches to send, want 10 (plus at most ~1 s of acknowledged ones)", got)
	}
}
