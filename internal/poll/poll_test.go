package poll

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestUntil(t *testing.T) {
	var n atomic.Int32
	Until(t, "the third call", func() bool { return n.Add(1) == 3 })
	if got := n.Load(); got != 3 {
		t.Errorf("cond called %d times, want 3", got)
	}
}

func TestWithin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if Within(time.Second, func() bool { return false }) {
			t.Fatal("a condition that never holds: Within reported true")
		}
		if took := time.Since(start); took < time.Second || took > time.Second+200*time.Millisecond {
			t.Errorf("gave up after %v, want just past 1s", took)
		}
		var n int
		if !Within(time.Second, func() bool { n++; return n == 3 }) {
			t.Fatal("a condition that holds on the third call: Within reported false")
		}
	})
}
