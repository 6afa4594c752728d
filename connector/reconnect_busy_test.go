package connector

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/adit-dev/adit/tunnel/tunnelquic"
	"github.com/adit-dev/adit/tunnel/tunnelws"
)

// TestHandshakeBusyBacksOff: a dial the edge refused for now (its bound
// on handshakes) is tried again after a jittered backoff that doubles
// over the refusals in a row, and a sibling's registration does not wake
// it early.
func TestHandshakeBusyBacksOff(t *testing.T) {
	for _, busyErr := range []error{tunnelquic.ErrEdgeBusy, tunnelws.ErrEdgeBusy} {
		t.Run(busyErr.Error(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const refusals = 3
				var mu sync.Mutex
				tries := map[int][]time.Time{}
				e := newFakeEdge("up")
				c := newTestConnector(t, 4, e)
				c.serveFn = func(ctx context.Context, index int, addr string, log *slog.Logger, at *attempt) error {
					mu.Lock()
					tries[index] = append(tries[index], time.Now())
					n := len(tries[index])
					mu.Unlock()
					if index > 0 && n <= refusals {
						return fmt.Errorf("dial %s: %w", addr, busyErr)
					}
					return e.serve(ctx, index, addr, log, at)
				}
				stop := runConnector(t, c)
				defer stop()
				time.Sleep(handshakeRetryBase*(1+2+4) + time.Second)
				mu.Lock()
				defer mu.Unlock()
				for i := 1; i < 4; i++ {
					if len(tries[i]) != refusals+1 {
						t.Errorf("connection %d: %d attempts, want %d", i, len(tries[i]), refusals+1)
						continue
					}
					for k := range refusals {
						d := handshakeRetryBase << k
						if got := tries[i][k+1].Sub(tries[i][k]); got < d/2 || got > d {
							t.Errorf("connection %d, refusal %d: dialled again after %v, want within [%v, %v]", i, k+1, got, d/2, d)
						}
					}
				}
				if n := len(e.registrations()); n != 4 {
					t.Errorf("%d connections registered, want 4", n)
				}
			})
		})
	}
}

// TestHandshakeBusyIsNotBlockedUDP: "auto" does not take a QUIC
// handshake the edge refused for now as evidence that UDP is blocked.
func TestHandshakeBusyIsNotBlockedUDP(t *testing.T) {
	if quicBlocked(fmt.Errorf("quic: dial x: %w", tunnelquic.ErrEdgeBusy)) {
		t.Error("quicBlocked(ErrEdgeBusy) = true, want false")
	}
	if !quicBlocked(context.DeadlineExceeded) {
		t.Error("quicBlocked(timeout) = false, want true")
	}
}
