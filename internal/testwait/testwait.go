// Package testwait is the tests' one "eventually": wait, polling, until a
// condition holds, and fail the test if it never does. A deadline here is
// not a speed assertion (speed is measured by benchmarks): it only turns a
// hang into a failure that says what never happened.
package testwait

import (
	"testing"
	"time"
)

// Deadline bounds every wait: generous, for a loaded CI machine.
const Deadline = 30 * time.Second

// Until polls cond every few milliseconds until it returns true, or fails t
// with what after Deadline.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Deadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", Deadline, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
