package edge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adit-dev/adit/tunnel"
)

// countingConn is a tunnel.Conn whose received-packet count the test
// sets, and which counts the probes opened on it and says whether it was
// closed.
type countingConn struct {
	tunnel.Conn // nil: only the methods below are called
	packets     atomic.Uint64
	probes      atomic.Int32
	closed      atomic.Bool
}

func (c *countingConn) PacketsReceived() uint64 { return c.packets.Load() }

func (c *countingConn) OpenStream(context.Context) (tunnel.Stream, error) {
	c.probes.Add(1)
	return nil, errors.New("test: no streams")
}

func (c *countingConn) Close(tunnel.ErrorCode, string) error {
	c.closed.Store(true)
	return nil
}

// TestCheckHealth: a connection is suspect once it was silent for
// suspectAfter, or for probeAfter after a stream was opened on it, and
// healthy again once heard from.
func TestCheckHealth(t *testing.T) {
	const after = 12 * time.Second
	t0 := time.Unix(1_000_000, 0)
	type step struct {
		at      time.Duration // since t0
		opened  bool          // a stream is opened at this time, before the check
		packet  bool          // a packet arrives at this time, before the check
		suspect bool          // want after the check
		probes  int32         // want probes opened so far
		closed  bool          // want the connection closed
	}
	for _, tc := range []struct {
		name     string
		inflight int64 // requests in flight throughout
		steps    []step
	}{
		{"idle and heard", 0, []step{{at: 0}, {at: 10 * time.Second, packet: true}, {at: 20 * time.Second}}},
		{"idle past the keepalive margin", 0, []step{{at: 0}, {at: 11 * time.Second}, {at: 12 * time.Second, suspect: true}}},
		{"stream answered", 0, []step{{at: 0}, {at: time.Second, opened: true}, {at: 1100 * time.Millisecond, packet: true}, {at: 4 * time.Second}}},
		{"stream unanswered", 0, []step{{at: 0}, {at: time.Second, opened: true}, {at: 2900 * time.Millisecond}, {at: 3 * time.Second, suspect: true}}},
		// A stream opened while an earlier one waits does not move the
		// probe's start.
		{"streams unanswered", 0, []step{{at: 0}, {at: time.Second, opened: true}, {at: 2500 * time.Millisecond, opened: true}, {at: 3 * time.Second, suspect: true}}},
		{"heard again", 0, []step{{at: 0}, {at: time.Second, opened: true}, {at: 3 * time.Second, suspect: true}, {at: 5 * time.Second, packet: true}}},
		// A request in flight on a silent connection: the edge probes.
		{"in flight, probe answered", 1, []step{{at: 0}, {at: 1900 * time.Millisecond}, {at: 2 * time.Second, probes: 1},
			{at: 2100 * time.Millisecond, packet: true, probes: 1}, {at: 4 * time.Second, probes: 1}, {at: 5 * time.Second, probes: 2}}},
		{"in flight, probe unanswered", 1, []step{{at: 0}, {at: 2 * time.Second, probes: 1}, {at: 3900 * time.Millisecond, probes: 1},
			{at: 4 * time.Second, suspect: true, probes: 1}, {at: 6900 * time.Millisecond, suspect: true, probes: 1},
			{at: 7 * time.Second, suspect: true, probes: 1, closed: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{ctx: context.Background(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			defer s.wg.Wait()
			c := &countingConn{}
			conn := &tunnelConn{conn: c}
			conn.inflight.Store(tc.inflight)
			for i, st := range tc.steps {
				now := t0.Add(st.at)
				if st.opened {
					conn.health.opened(now)
				}
				if st.packet {
					c.packets.Add(1)
				}
				s.checkHealth(conn, now, after)
				s.wg.Wait() // the probes and closes the check spawned
				if got := conn.health.suspect.Load(); got != st.suspect {
					t.Fatalf("step %d (at %v): suspect = %v, want %v", i, st.at, got, st.suspect)
				}
				if got := c.probes.Load(); got != st.probes {
					t.Fatalf("step %d (at %v): %d probes, want %d", i, st.at, got, st.probes)
				}
				if got := c.closed.Load(); got != st.closed {
					t.Fatalf("step %d (at %v): closed = %v, want %v", i, st.at, got, st.closed)
				}
			}
		})
	}
}
