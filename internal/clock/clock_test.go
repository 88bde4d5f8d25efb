package clock

import (
	"testing"
	"time"
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
