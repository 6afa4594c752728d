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
	if !Within(Timeout, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// Within calls cond as Until does until it returns true or d has passed,
// and reports whether it returned true. It is for waits whose deadline is
// part of what is tested (a revocation reaching every edge within 2s),
// for waits whose failure says more than Until's message (the last
// answer seen, the goroutines left), and for goroutines other than the
// test's, which must not call t.Fatal.
func Within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for delay := time.Millisecond; !cond(); delay = min(delay*2, 100*time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(delay)
	}
	return true
}
