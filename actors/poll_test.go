package actors

import (
	"testing"
	"time"
)

// eventually polls cond until it holds, and fails the test after timeout.
// The one polling helper of this package's tests.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: not true: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}
