package edge

import (
	"context"
	"sync/atomic"
	"time"
)

// Admission control for registrations. When an edge restarts, every
// connector it held dials it again within a second or two; at 40,000
// connections that is a stampede. The edge works on a bounded number of
// registrations at once (Config.MaxRegistering); a registration that finds
// them all taken waits for one up to admitWait, and past that, or when
// more than admitQueue are already waiting, it is refused for now: the
// `registered` answer carries an error ("edge busy") and retry_after_ms
// (protocol version 4), the time the edge expects to need for the ones
// ahead of it. The connector waits that long plus jitter (connector
// package: reconnect.go) and registers again, so the crowd spreads out
// instead of timing out and retrying all at once.
//
// What a registration costs the edge is mostly its connection record's
// etcd write, which the presence batches (control/controlserver.Presence),
// so the bound is a few batches' worth.

// DefaultMaxRegistering is Config.MaxRegistering's default.
const DefaultMaxRegistering = 256

const (
	// admitWait is how long a registration waits for a place before it is
	// refused for now; well under the connector's 10s registration timeout.
	admitWait = 2 * time.Second
	// admitQueue, times the limit, is how many registrations may wait for
	// a place; those past it are refused at once.
	admitQueue = 4
	// retryAfterMin and retryAfterMax bound the delay a refusal asks for.
	retryAfterMin = 500 * time.Millisecond
	retryAfterMax = 30 * time.Second
)

// admission is the edge's bound on registrations in progress.
type admission struct {
	slots   chan struct{} // a place per registration in progress
	waiting atomic.Int64  // registrations waiting for a place
	avg     atomic.Int64  // recent registrations' duration, nanoseconds (EWMA)
}

func newAdmission(limit int) *admission {
	if limit <= 0 {
		limit = DefaultMaxRegistering
	}
	a := &admission{slots: make(chan struct{}, limit)}
	a.avg.Store(int64(50 * time.Millisecond))
	return a
}

// acquire takes a place for a registration. If there is none, it returns
// ok false and how long the connector should wait before it tries again.
// release gives the place back and records how long it was held.
func (a *admission) acquire(ctx context.Context) (release func(), retryAfter time.Duration, ok bool) {
	select {
	case a.slots <- struct{}{}:
		return a.releaser(), 0, true
	default:
	}
	n := a.waiting.Add(1)
	defer a.waiting.Add(-1)
	if n > int64(admitQueue*cap(a.slots)) {
		return nil, a.retryAfter(n), false
	}
	t := time.NewTimer(admitWait)
	defer t.Stop()
	select {
	case a.slots <- struct{}{}:
		return a.releaser(), 0, true
	case <-t.C:
	case <-ctx.Done():
	}
	return nil, a.retryAfter(a.waiting.Load()), false
}

func (a *admission) releaser() func() {
	start := time.Now()
	return func() {
		d := int64(time.Since(start))
		// EWMA with weight 1/8; races between releases only blur it.
		old := a.avg.Load()
		a.avg.Store(old + (d-old)/8)
		<-a.slots
	}
}

// retryAfter is the time the registrations ahead (waiting, plus the
// places in use) need at the recent pace, within [retryAfterMin,
// retryAfterMax].
func (a *admission) retryAfter(waiting int64) time.Duration {
	ahead := waiting + int64(cap(a.slots))
	d := time.Duration(ahead * a.avg.Load() / int64(cap(a.slots)))
	return min(max(d, retryAfterMin), retryAfterMax)
}
