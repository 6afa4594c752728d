// Package poll waits in tests for a condition that other goroutines or
// processes bring about, when there is no signal to wait on: it checks
// often at first, then every 100ms, and gives up after a deadline generous
// enough for a loaded 2-core CI machine.
package poll

import (
	"testing"
	"time"
)

// Timeout is how long Until waits before it fails the test.
const Timeout = 30 * time.Second

// Until calls cond until it returns true, checking after 1ms, then at
// doubling intervals up to 100ms; after Timeout it fails t with "timed out
// waiting for <what>".
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for delay := time.Millisecond; !cond(); delay = min(delay*2, 100*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(delay)
	}
}
