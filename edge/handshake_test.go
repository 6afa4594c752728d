package edge

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestHandshakeGate: places are taken up to the bound (unproven QUIC
// addresses up to half of it), given back once each, and the refusals
// are counted by transport.
func TestHandshakeGate(t *testing.T) {
	remote := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name        string
		max         int
		verified    bool
		wantPlaces  int  // admitted before the first refusal (at most 300 tried)
		wantCrowded bool // with wantPlaces held
	}{
		{"proven, 4", 4, true, 4, true},
		{"unproven, 4: half", 4, false, 2, true},
		{"unproven, 1", 1, false, 1, true},
		{"default", 0, true, DefaultMaxHandshakes, true},
		{"no bound", -1, false, 300, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newEdgeMetrics(newRegistry())
			g := newHandshakeGate(tc.max, m, log)
			var releases []func()
			for range 300 {
				release, ok := g.admit("quic", remote, tc.verified)
				if !ok {
					break
				}
				releases = append(releases, release)
			}
			if len(releases) != tc.wantPlaces {
				t.Fatalf("admitted %d, want %d", len(releases), tc.wantPlaces)
			}
			if got := g.crowded(); got != tc.wantCrowded {
				t.Errorf("crowded with %d held: got %v, want %v", len(releases), got, tc.wantCrowded)
			}
			refusals := 0.0
			if tc.max >= 0 {
				refusals = 1
			}
			if got := testutil.ToFloat64(m.handshakesRefused.WithLabelValues("quic")); got != refusals {
				t.Errorf("refusals counted: got %v, want %v", got, refusals)
			}
			// A place given back twice counts once.
			releases[0]()
			releases[0]()
			if got := g.inUse.Load(); got != int64(len(releases)-1) {
				t.Errorf("after one release (twice): %d in use, want %d", got, len(releases)-1)
			}
			if _, ok := g.wsAdmit(remote); !ok {
				t.Error("a freed place was not given to the next handshake")
			}
			for _, r := range releases[1:] {
				r()
			}
			if got := g.inUse.Load(); got != 1 {
				t.Errorf("after every release: %d in use, want 1 (the WebSocket one)", got)
			}
		})
	}
}
