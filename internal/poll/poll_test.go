package poll

import (
	"sync/atomic"
	"testing"
)

func TestUntil(t *testing.T) {
	var n atomic.Int32
	Until(t, "the third call", func() bool { return n.Add(1) == 3 })
	if got := n.Load(); got != 3 {
		t.Errorf("cond called %d times, want 3", got)
	}
}
