package sample

import (
	"context"
	"testing"
	"time"
)

func TestRealClockSleepUntil(t *testing.T) {
	var c RealClock
	due := time.Now().Add(3 * time.Millisecond)
	if err := c.SleepUntil(t.Context(), due); err != nil {
		t.Fatal(err)
	}
	if time.Now().Before(due) {
		t.Fatal("SleepUntil returned before the due time")
	}
	if err := c.SleepUntil(t.Context(), time.Now().Add(-time.Second)); err != nil {
		t.Fatalf("past due time: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.SleepUntil(ctx, time.Now().Add(time.Hour)) }()
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("cancelled hour-long sleep returned %v, want context.Canceled", err)
	}
}
