package tunneltest

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/adit-dev/adit/tunnel"
)

// Gate is a transport's Admit hook for tests: a fixed number of places,
// with counts of what it did.
type Gate struct {
	limit    int
	mu       sync.Mutex
	held     int
	verified int // places given to addresses a QUIC Retry proved
	refused  int
	released chan struct{} // a value per release
}

// NewGate makes a Gate of limit places.
func NewGate(limit int) *Gate {
	return &Gate{limit: limit, released: make(chan struct{}, 1000)}
}

// Admit takes a place if one is free; release gives it back (once).
func (g *Gate) Admit(_ net.Addr, verified bool) (release func(), ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held >= g.limit {
		g.refused++
		return nil, false
	}
	g.held++
	if verified {
		g.verified++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			g.held--
			g.mu.Unlock()
			g.released <- struct{}{}
		})
	}, true
}

// AdmitAddr is Admit for a transport that knows no address validation.
func (g *Gate) AdmitAddr(a net.Addr) (release func(), ok bool) { return g.Admit(a, true) }

// State is the places held now, and the refusals and places given to
// proven addresses so far.
func (g *Gate) State() (held, refused, verified int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held, g.refused, g.verified
}

// WaitHeld waits until n places are held, failing the test after within.
func (g *Gate) WaitHeld(t testing.TB, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for held, _, _ := g.State(); held != n; held, _, _ = g.State() {
		if time.Now().After(deadline) {
			t.Fatalf("%d places held after %s, want %d", held, within, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitReleased waits for one release, failing the test after within.
func (g *Gate) WaitReleased(t testing.TB, within time.Duration, what string) {
	t.Helper()
	select {
	case <-g.released:
	case <-time.After(within):
		held, _, _ := g.State()
		t.Fatalf("%s: the place was not given back within %s (%d held)", what, within, held)
	}
}

// CheckAdmitAccepted checks a transport's bound on handshakes with g of
// one place on ln: a connection holds the place from its first packet
// until Accept returns it, a dial past the bound fails with busy (and
// quickly: at the answer to its first flight), and one after Accept gets
// the place.
func CheckAdmitAccepted(t *testing.T, ln tunnel.Listener, g *Gate, dial func(context.Context) (tunnel.Conn, error), busy error) {
	t.Helper()
	ctx := Context(t)
	a, err := dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(tunnel.CodeNormal, "")
	if held, _, _ := g.State(); held != 1 {
		t.Fatalf("after a handshake not yet accepted: %d places held, want 1", held)
	}
	start := time.Now()
	if _, err := dial(ctx); !errors.Is(err, busy) {
		t.Fatalf("dial past the bound: got %v, want %v", err, busy)
	}
	// Generous for a loaded machine: the answer is one packet, where a
	// lost one would cost a handshake timeout.
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("refusal took %s; want it at the first flight's answer", d)
	}
	// A QUIC first flight of two Initial packets (a post-quantum key
	// share) is refused once per packet.
	if _, refused, _ := g.State(); refused < 1 || refused > 2 {
		t.Errorf("refused %d, want 1 or 2", refused)
	}
	sa, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Close(tunnel.CodeNormal, "")
	g.WaitReleased(t, time.Second, "accepted")
	b, err := dial(ctx)
	if err != nil {
		t.Fatalf("dial once the place is free: %v", err)
	}
	defer b.Close(tunnel.CodeNormal, "")
	sb, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sb.Close(tunnel.CodeNormal, "")
	g.WaitReleased(t, time.Second, "second accepted")
}
