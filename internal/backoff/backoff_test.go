package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestNextDoublesToMax(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := b.Next(); got != w*time.Millisecond {
			t.Fatalf("wait %d = %v, want %v", i, got, w*time.Millisecond)
		}
	}
	b.Reset()
	if got := b.Next(); got != 100*time.Millisecond {
		t.Fatalf("after Reset: %v, want 100ms", got)
	}
}

func TestDefaultsAndOverflow(t *testing.T) {
	var b Backoff
	if got := b.Next(); got != 100*time.Millisecond {
		t.Fatalf("zero Backoff's first wait %v, want 100ms", got)
	}
	for range 100 { // no overflow past Max however many attempts
		if got := b.Next(); got <= 0 || got > 10*time.Second {
			t.Fatalf("wait %v outside (0, 10s]", got)
		}
	}
	if got := b.Next(); got != 10*time.Second {
		t.Fatalf("capped wait %v, want 10s", got)
	}
}

func TestJitterWithinHalfAndFull(t *testing.T) {
	b := Backoff{Min: time.Second, Max: time.Second, Jitter: true}
	seen := map[time.Duration]bool{}
	for range 200 {
		d := b.Next()
		if d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("jittered wait %v outside [500ms, 1s]", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct jittered waits", len(seen))
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Wait(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on an ended context = %v", err)
	}
	if err := Wait(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Wait = %v", err)
	}
}
