package connector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/tunnel"
)

// fakeFleet stands in for serveConn with several edges, each "up",
// "down" (a dial gets no answer for 2s) or "leaving" (it closes its
// connections with code 4 and refuses new ones the same way). A
// registered connection drains when its slot moves (attempt.move).
// It runs in a synctest bubble, as do the tests: its time.Sleeps are the
// simulated network's delays and the tests' the simulated time they let
// pass; both advance the fake clock at once, and wait on nothing.
type fakeFleet struct {
	mu      sync.Mutex
	state   map[string]string
	changed chan struct{}
	conns   map[string]map[int]int // addr → slot → connections registered there
	live    int                    // registered connections
	minLive int                    // the fewest seen since resetMin
	c       *Connector
}

func newFakeFleet(addrs ...string) *fakeFleet {
	f := &fakeFleet{state: map[string]string{}, changed: make(chan struct{}), conns: map[string]map[int]int{}}
	for _, a := range addrs {
		f.state[a] = "up"
		f.conns[a] = map[int]int{}
	}
	return f
}

func (f *fakeFleet) set(addr, state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state[addr] = state
	if f.conns[addr] == nil {
		f.conns[addr] = map[int]int{}
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeFleet) get(addr string) (string, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state[addr], f.changed
}

// perEdge is how many registered connections each edge holds.
func (f *fakeFleet) perEdge() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for a, m := range f.conns {
		for _, n := range m {
			out[a] += n
		}
	}
	return out
}

func (f *fakeFleet) resetMin() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.minLive = f.live
}

func (f *fakeFleet) lowest() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.minLive
}

func (f *fakeFleet) track(addr string, index, d int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns[addr][index] += d
	f.live += d
	f.minLive = min(f.minLive, f.live)
}

func (f *fakeFleet) serve(ctx context.Context, index int, addr string, log *slog.Logger, at *attempt) error {
	state, _ := f.get(addr)
	switch state {
	case "down":
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
		return errors.New("quic: dial: timeout: no recent network activity")
	case "leaving":
		time.Sleep(time.Millisecond)
		return &tunnel.CloseError{Code: tunnel.CodeShutdown, Reason: "edge draining", Remote: true}
	}
	time.Sleep(time.Millisecond) // a round trip
	f.track(addr, index, 1)
	defer f.track(addr, index, -1)
	at.setRegistered(strings.TrimPrefix(addr, "alias-")) // lists name edges by their address
	for {
		state, changed := f.get(addr)
		switch state {
		case "down":
			// Found dead by the idle timeout.
			time.Sleep(5 * time.Second)
			return errors.New("timeout: no recent network activity")
		case "leaving":
			return &tunnel.CloseError{Code: tunnel.CodeShutdown, Reason: "edge shutting down", Remote: true}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-at.move:
			time.Sleep(10 * time.Millisecond) // the last requests finish
			return errMoved
		case <-changed:
		}
	}
}

func newFleetConnector(t *testing.T, ha int, f *fakeFleet, region string, addrs ...string) *Connector {
	t.Helper()
	ing, err := ingress.FromURL("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{
		TunnelID:      "6ff42ae2-765d-4adf-8112-31c55c1551ef",
		Secret:        []byte("secret"),
		EdgeAddrs:     addrs,
		Region:        region,
		Ingress:       ing,
		HAConnections: ha,
	})
	if err != nil {
		t.Fatal(err)
	}
	c.serveFn = f.serve
	f.c = c
	return c
}

func list(edges ...string) []tunnel.FleetEdge {
	var out []tunnel.FleetEdge
	for _, e := range edges {
		var region string
		addr, region, _ := cut(e)
		out = append(out, tunnel.FleetEdge{Name: addr, Addr: addr, Region: region})
	}
	return out
}

// cut splits "addr@region".
func cut(s string) (addr, region string, ok bool) {
	for i := range s {
		if s[i] == '@' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func spreadString(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s:%d", k, m[k]))
		}
	}
	return fmt.Sprint(parts)
}

// TestSpread: the HA connections spread evenly over the configured edges,
// then over the edges a list names, with the region preferred.
func TestSpread(t *testing.T) {
	cases := []struct {
		name   string
		region string
		addrs  []string // configured
		list   []string // "addr@region"; nil: no list
		want   map[string]int
		wantN  int // when want is nil: how many edges hold some
	}{
		{"two configured", "", []string{"a:1", "b:1"}, nil, map[string]int{"a:1": 2, "b:1": 2}, 0},
		{"one configured, a list of two", "", []string{"a:1"}, []string{"a:1", "b:1"}, map[string]int{"a:1": 2, "b:1": 2}, 0},
		{"list of three", "", []string{"a:1"}, []string{"a:1", "b:1", "c:1"}, nil, 3},
		{"list replaces a load balancer address", "", []string{"lb:1"}, []string{"a:1", "b:1"}, map[string]int{"a:1": 2, "b:1": 2}, 0},
		{"a configured alias of a listed edge stays", "", []string{"alias-x:1"}, []string{"x:1"}, map[string]int{"alias-x:1": 4}, 0},
		{"region with two edges", "eu", []string{"a:1"}, []string{"a:1@eu", "b:1@us", "c:1@eu"}, map[string]int{"a:1": 2, "c:1": 2}, 0},
		{"region with one edge keeps one slot elsewhere", "eu", []string{"a:1"}, []string{"a:1@us", "b:1@eu", "c:1@us"}, nil, 2},
		{"region with no edge", "ap", []string{"a:1"}, []string{"a:1@us", "b:1@eu"}, map[string]int{"a:1": 2, "b:1": 2}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				all := append([]string{}, tc.addrs...)
				for _, e := range tc.list {
					a, _, _ := cut(e)
					all = append(all, a)
				}
				f := newFakeFleet(all...)
				c := newFleetConnector(t, 4, f, tc.region, tc.addrs...)
				stop := runConnector(t, c)
				defer stop()
				time.Sleep(100 * time.Millisecond)
				if tc.list != nil {
					c.edges.update(list(tc.list...))
					time.Sleep(time.Second)
				}
				got := f.perEdge()
				total := 0
				for _, n := range got {
					total += n
				}
				if total != 4 {
					t.Fatalf("%d connections registered (%s), want 4", total, spreadString(got))
				}
				if tc.want != nil {
					if spreadString(got) != spreadString(tc.want) {
						t.Errorf("spread %s, want %s", spreadString(got), spreadString(tc.want))
					}
					return
				}
				n := 0
				for _, v := range got {
					if v > 0 {
						n++
					}
				}
				if n != tc.wantN {
					t.Errorf("spread %s: %d edges, want %d", spreadString(got), n, tc.wantN)
				}
				if tc.region == "eu" && got["b:1"] != 3 {
					t.Errorf("spread %s: want 3 connections on the region's one edge b:1", spreadString(got))
				}
			})
		})
	}
}

// TestEdgeDiesConnectionsMove: when an edge dies, its connections move
// to the other edge at once, the other's are untouched, and when it comes
// back the connections spread over both again.
func TestEdgeDiesConnectionsMove(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeFleet("a:1", "b:1")
		c := newFleetConnector(t, 4, f, "", "a:1", "b:1")
		stop := runConnector(t, c)
		defer stop()
		time.Sleep(100 * time.Millisecond)
		f.resetMin()
		died := time.Now()
		f.set("b:1", "down")
		time.Sleep(5*time.Second + 100*time.Millisecond) // its connections' idle timeout, and a round trip
		if got := f.perEdge(); got["a:1"] != 4 {
			t.Errorf("%v after b died: %s, want every connection on a:1", time.Since(died), spreadString(got))
		}
		if n := f.lowest(); n < 2 {
			t.Errorf("the connections on a:1 were touched: %d registered at the lowest, want 2", n)
		}
		f.set("b:1", "up")
		time.Sleep(failRetry + 3*time.Second)
		if got := f.perEdge(); got["a:1"] != 2 || got["b:1"] != 2 {
			t.Errorf("after b came back: %s, want 2 and 2", spreadString(got))
		}
	})
}

// TestDrainMovesBeforeBreak: a goaway (or code 4) moves the connections
// one at a time, each registered elsewhere before
// the old one is let go, so the connector never holds fewer than it
// should.
func TestDrainMovesBeforeBreak(t *testing.T) {
	for _, how := range []string{"goaway", "code 4"} {
		t.Run(how, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeFleet("a:1", "b:1", "c:1")
				c := newFleetConnector(t, 4, f, "", "a:1")
				stop := runConnector(t, c)
				defer stop()
				time.Sleep(100 * time.Millisecond)
				c.edges.update(list("a:1", "b:1", "c:1"))
				time.Sleep(time.Second)
				f.resetMin()
				if got := f.perEdge(); got["a:1"] == 0 {
					t.Fatalf("no connection on a:1 to drain: %s", spreadString(got))
				}
				switch how {
				case "goaway":
					frame, _ := tunnel.AppendMessage(nil, &tunnel.GoAway{Reason: "draining"})
					c.fleetFrame(tunnel.FrameGoAway, frame[2:], "a:1", slog.New(slog.DiscardHandler))
				case "code 4":
					f.set("a:1", "leaving")
				}
				time.Sleep(2 * time.Second)
				got := f.perEdge()
				if got["a:1"] != 0 || got["b:1"]+got["c:1"] != 4 || got["b:1"] < 1 || got["c:1"] < 1 {
					t.Errorf("after a:1 drained: %s, want 4 over b:1 and c:1", spreadString(got))
				}
				if n := f.lowest(); how != "code 4" && n < 4 {
					t.Errorf("%d connections at the lowest while moving, want 4 (make before break)", n)
				}
			})
		})
	}
}

// TestListedDrainingKeepsConnections: an edge a list marks draining keeps
// the connections it has (it still serves visitors until it says goaway)
// until its goaway.
func TestListedDrainingKeepsConnections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeFleet("a:1", "b:1")
		c := newFleetConnector(t, 4, f, "", "a:1", "b:1")
		stop := runConnector(t, c)
		defer stop()
		time.Sleep(100 * time.Millisecond)
		l := list("a:1", "b:1")
		l[0].Draining = true
		c.edges.update(l)
		time.Sleep(2 * time.Second)
		if got := f.perEdge(); got["a:1"] != 2 || got["b:1"] != 2 {
			t.Errorf("after a list marked a:1 draining: %s, want 2 and 2 still", spreadString(got))
		}
		// Its goaway then moves them.
		frame, _ := tunnel.AppendMessage(nil, &tunnel.GoAway{Reason: "draining"})
		c.fleetFrame(tunnel.FrameGoAway, frame[2:], "a:1", slog.New(slog.DiscardHandler))
		time.Sleep(2 * time.Second)
		if got := f.perEdge(); got["b:1"] != 4 {
			t.Errorf("after a:1's goaway: %s, want 4 on b:1", spreadString(got))
		}
	})
}

// TestFindEdgesAgain: Config.FindEdges runs every FindEdgesEvery while
// the connector runs; the edges it finds replace the configured ones, so
// the connections leave an edge no longer found for the new ones; a
// failed or empty lookup keeps what is known.
func TestFindEdgesAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeFleet("a:1", "b:1", "c:1")
		c := newFleetConnector(t, 4, f, "", "a:1")
		var mu sync.Mutex
		found, err := []string{"a:1"}, error(nil)
		setFound := func(addrs []string, e error) {
			mu.Lock()
			defer mu.Unlock()
			found, err = addrs, e
		}
		c.cfg.FindEdgesEvery = 10 * time.Second
		c.cfg.FindEdges = func(context.Context) ([]string, error) {
			mu.Lock()
			defer mu.Unlock()
			return found, err
		}
		stop := runConnector(t, c)
		defer stop()
		time.Sleep(100 * time.Millisecond)
		if got := f.perEdge(); got["a:1"] != 4 {
			t.Fatalf("at start: %s, want every connection on a:1", spreadString(got))
		}
		setFound([]string{"b:1", "c:1"}, nil)
		time.Sleep(10*time.Second + time.Second)
		if got := f.perEdge(); got["a:1"] != 0 || got["b:1"] != 2 || got["c:1"] != 2 {
			t.Errorf("after the lookup found b and c: %s, want 2 and 2 on them", spreadString(got))
		}
		setFound(nil, errors.New("lookup failed"))
		time.Sleep(10*time.Second + time.Second)
		setFound(nil, nil)
		time.Sleep(10*time.Second + time.Second)
		if got := f.perEdge(); got["b:1"] != 2 || got["c:1"] != 2 {
			t.Errorf("after failed and empty lookups: %s, want 2 and 2 on b and c still", spreadString(got))
		}
	})
}
