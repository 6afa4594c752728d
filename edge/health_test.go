package edge

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/poll"
	"github.com/adit-dev/adit/tunnel"
)

// countingConn is a tunnel connection reduced to what the watchdog reads:
// a packet count the test moves, and the close it records.
type countingConn struct {
	tunnel.Conn // nil: the watchdog calls nothing else
	mu          sync.Mutex
	packets     uint64
	closed      bool
	code        tunnel.ErrorCode
}

func (c *countingConn) PacketsReceived() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.packets
}

func (c *countingConn) hear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.packets++
}

func (c *countingConn) Close(code tunnel.ErrorCode, _ string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed, c.code = true, code
	return nil
}

func (c *countingConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *countingConn) RemoteAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestWatchdogJudges: an older connector's connections are judged one by
// one after 2.5s of silence; a heartbeating connector's together, by the
// last packet on any of them, suspect after 4.5s and closed after 6s;
// one connector's silence says nothing about another's.
func TestWatchdogJudges(t *testing.T) {
	s := startTestEdge(t)
	defer s.Close()
	mk := func(connector string, index int, heartbeat bool) (*tunnelConn, *countingConn) {
		c := &countingConn{}
		tc := &tunnelConn{conn: c, info: control.Connection{TunnelID: "t", ConnectorID: connector, Index: index}}
		tc.health.heartbeat = heartbeat
		return tc, c
	}
	oldA, oldAc := mk("old", 0, false)
	oldB, _ := mk("old", 1, false)
	sentinel, sentinelc := mk("new", 0, true)
	idle1, _ := mk("new", 1, true)
	idle2, idle2c := mk("new", 2, true)
	other, otherc := mk("other", 0, true)
	conns := []*tunnelConn{oldA, oldB, sentinel, idle1, idle2, other}
	heard := map[connectorKey]heardAt{}
	t0 := time.Now()
	at := func(d time.Duration) { s.judge(conns, t0.Add(d), heard) }
	suspects := func() (got []*tunnelConn) {
		for _, tc := range conns {
			if tc.health.suspect.Load() {
				got = append(got, tc)
			}
		}
		return got
	}
	want := func(when string, ws ...*tunnelConn) {
		t.Helper()
		got := suspects()
		if len(got) != len(ws) {
			t.Fatalf("%s: %d suspect, want %d", when, len(got), len(ws))
		}
		for i := range ws {
			if got[i] != ws[i] {
				t.Fatalf("%s: suspect %s, want %s", when, got[i].label(), ws[i].label())
			}
		}
	}

	at(0) // every connection heard at registration
	for _, d := range []time.Duration{2 * time.Second, 4 * time.Second} {
		// The old connector's first connection keeps alive; the sentinel
		// and the other connector heartbeat every 2s.
		oldAc.hear()
		sentinelc.hear()
		otherc.hear()
		at(d)
	}
	want("4s: the old connector's silent connection", oldB)
	at(8400 * time.Millisecond)
	want("4.4s after the sentinel's last heartbeat: its connector is fine", oldA, oldB)
	idle2c.hear() // an idle connection's 10s keepalive counts for the connector
	otherc.hear()
	at(8600 * time.Millisecond)
	otherc.hear()
	at(13 * time.Second)
	want("4.4s after the idle connection's keepalive", oldA, oldB)
	otherc.hear()
	at(13200 * time.Millisecond)
	want("4.6s after the connector was last heard: all of its connections", oldA, oldB, sentinel, idle1, idle2)
	if sentinelc.isClosed() || idle2c.isClosed() {
		t.Fatal("closed before heartbeatCloseAfter")
	}
	otherc.hear()
	at(14600 * time.Millisecond)
	poll.Within(5*time.Second, func() bool { return sentinelc.isClosed() && idle2c.isClosed() })
	if sentinelc.code != tunnel.CodeNormal || otherc.isClosed() || oldAc.isClosed() {
		t.Errorf("after 6s: sentinel closed with %d, other closed %v, old closed %v; want code 0, the others open (an old connector ends at its idle timeout)",
			sentinelc.code, otherc.isClosed(), oldAc.isClosed())
	}
	sentinelc.hear() // a SIGCONT: heard again, all of them at once
	oldAc.hear()
	otherc.hear()
	at(19 * time.Second)
	want("heard again", oldB)
}

// TestWatchdogSentinelLeaves: when the connection that carried a
// connector's heartbeats leaves (a drain unregistered it, it was lost),
// the connector's other connections, heard only at their rare
// keepalives, are judged by its last heartbeat until the next sentinel
// beats, not closed at once as silent; a connector that is gone with
// all its connections is forgotten.
func TestWatchdogSentinelLeaves(t *testing.T) {
	s := startTestEdge(t)
	defer s.Close()
	mk := func(index int) (*tunnelConn, *countingConn) {
		c := &countingConn{}
		tc := &tunnelConn{conn: c, info: control.Connection{TunnelID: "t", ConnectorID: "c", Index: index}}
		tc.health.heartbeat = true
		return tc, c
	}
	sentinel, sentinelc := mk(0)
	idle, idlec := mk(1)
	heard := map[connectorKey]heardAt{}
	t0 := time.Now()
	s.judge([]*tunnelConn{sentinel, idle}, t0, heard) // both heard at registration
	for d := 2 * time.Second; d <= 8*time.Second; d += 2 * time.Second {
		sentinelc.hear()
		s.judge([]*tunnelConn{sentinel, idle}, t0.Add(d), heard)
	}
	// The sentinel leaves right after its heartbeat at 8s; the idle
	// connection was last heard 8s ago. Its next sentinel, idle itself,
	// beats a period later.
	s.judge([]*tunnelConn{idle}, t0.Add(8500*time.Millisecond), heard)
	if idle.health.suspect.Load() || idle.health.closing {
		t.Fatalf("0.5s after the sentinel's last heartbeat: the other connection is suspect %v, closing %v; want neither",
			idle.health.suspect.Load(), idle.health.closing)
	}
	idlec.hear()
	s.judge([]*tunnelConn{idle}, t0.Add(10*time.Second), heard)
	if idle.health.suspect.Load() || idlec.isClosed() {
		t.Fatal("the new sentinel's heartbeat did not keep its connector healthy")
	}
	s.judge(nil, t0.Add(11*time.Second), heard)
	if len(heard) != 0 {
		t.Errorf("a connector with no connection left is still remembered: %v", heard)
	}
}
