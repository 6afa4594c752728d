package edgepeer

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/poll"
	"github.com/adit-dev/adit/tunnel"
)

// fakeConn is a link's connection for Rank and the watchdog: a round trip
// and a packet count the test sets.
type fakeConn struct {
	tunnel.Conn
	rtt     time.Duration
	packets atomic.Uint64
}

func (c *fakeConn) RTT() time.Duration      { return c.rtt }
func (c *fakeConn) PacketsReceived() uint64 { return c.packets.Load() }

func testLinks(t *testing.T, region string, edges []control.EdgeNode, conns map[string]*fakeConn) *Links {
	l := &Links{cfg: Config{Node: "self"}, log: slog.New(slog.DiscardHandler),
		edges: map[string]control.EdgeNode{"self": {Name: "self", Region: region}}, links: map[string]*link{}}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	t.Cleanup(l.cancel)
	for _, e := range edges {
		l.edges[e.Name] = e
	}
	for n, c := range conns {
		l.links[n] = &link{peer: &Peer{Node: n}, conn: c}
	}
	return l
}

// TestRank: this edge's region first, then the lowest round trip; edges
// without a link, draining, or this edge itself are left out.
func TestRank(t *testing.T) {
	edges := []control.EdgeNode{
		{Name: "far-fast", Region: "us"}, {Name: "near-slow", Region: "eu"}, {Name: "near-fast", Region: "eu"},
		{Name: "draining", Region: "eu", Health: control.EdgeHealthDraining}, {Name: "unlinked", Region: "eu"},
	}
	conns := map[string]*fakeConn{
		"far-fast": {rtt: time.Millisecond}, "near-slow": {rtt: 30 * time.Millisecond},
		"near-fast": {rtt: 2 * time.Millisecond}, "draining": {rtt: time.Millisecond},
	}
	all := []string{"unlinked", "far-fast", "near-slow", "self", "draining", "near-fast", "near-fast"}
	for _, tc := range []struct {
		region string
		want   []string
	}{
		{"eu", []string{"near-fast", "near-slow", "far-fast"}},
		{"", []string{"far-fast", "near-fast", "near-slow"}},
	} {
		l := testLinks(t, tc.region, edges, conns)
		if got := l.Rank(all); !slices.Equal(got, tc.want) {
			t.Errorf("region %q: Rank = %v, want %v", tc.region, got, tc.want)
		}
	}
}

// TestQuietLink: a link that hears nothing for suspectAfter leaves the
// ranking until a packet arrives again.
func TestQuietLink(t *testing.T) {
	c := &fakeConn{}
	l := testLinks(t, "", []control.EdgeNode{{Name: "b"}}, map[string]*fakeConn{"b": c})
	go l.watch()
	if got := l.Rank([]string{"b"}); len(got) != 1 {
		t.Fatalf("a fresh link: Rank = %v, want [b]", got)
	}
	poll.Until(t, "the link to go quiet", func() bool { return len(l.Rank([]string{"b"})) == 0 })
	c.packets.Add(1)
	poll.Until(t, "the link to be heard again", func() bool { return len(l.Rank([]string{"b"})) == 1 })
}
