package clock

import (
	"context"
	"testing"
	"time"

	"github.com/pilake/pilake/internal/testwait"
)

func TestFakeFiresWhenDue(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(t0)
	a, b := f.After(time.Minute), f.After(time.Second)
	if f.Waiters() != 2 {
		t.Fatalf("%d waiters, want 2", f.Waiters())
	}
	f.Advance(time.Second)
	select {
	case got := <-b:
		if !got.Equal(t0.Add(time.Second)) {
			t.Fatalf("fired at %v", got)
		}
	default:
		t.Fatal("a 1 s wait did not fire after 1 s")
	}
	select {
	case <-a:
		t.Fatal("a 1 min wait fired after 1 s")
	default:
	}
	f.Advance(59 * time.Second)
	select {
	case <-a:
	default:
		t.Fatal("a 1 min wait did not fire after 1 min")
	}
	if f.Waiters() != 0 || !f.Now().Equal(t0.Add(time.Minute)) {
		t.Fatalf("waiters %d, now %v", f.Waiters(), f.Now())
	}
	select {
	case <-f.After(0):
	default:
		t.Fatal("After(0) did not fire at once")
	}
}

func TestReal(t *testing.T) {
	if d := time.Since(Real.Now()); d < 0 || d > time.Minute {
		t.Fatalf("Real.Now off by %v", d)
	}
	<-Real.After(time.Millisecond)
}

func TestRealSleepUntil(t *testing.T) {
	due := time.Now().Add(3 * time.Millisecond)
	if err := SleepUntil(t.Context(), Real, due); err != nil {
		t.Fatal(err)
	}
	if time.Now().Before(due) {
		t.Fatal("SleepUntil returned before the due time")
	}
	if err := SleepUntil(t.Context(), Real, time.Now().Add(-time.Second)); err != nil {
		t.Fatalf("past due time: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- SleepUntil(ctx, Real, time.Now().Add(time.Hour)) }()
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("cancelled hour-long sleep returned %v, want context.Canceled", err)
	}
}

// On a Fake, SleepUntil waits for Advance to reach the due time.
func TestFakeSleepUntil(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(t0)
	done := make(chan error, 1)
	go func() { done <- SleepUntil(t.Context(), f, t0.Add(time.Minute)) }()
	testwait.Until(t, "SleepUntil to wait on the fake clock", func() bool { return f.Waiters() == 1 })
	f.Advance(59 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("returned %v a second before the due time", err)
	default:
	}
	f.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := SleepUntil(ctx, f, t0.Add(time.Hour)); err != context.Canceled {
		t.Fatalf("with ctx ended: %v, want context.Canceled", err)
	}
}
