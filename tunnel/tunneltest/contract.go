package tunneltest

import (
	"context"
	"testing"
	"time"
)

// The parts of the transport contract the edge and the connector lean on
// besides bytes: a stream's Context and a connection's PacketsReceived,
// with the meaning tunnel.Stream and tunnel.Conn document.

// testStreamContext: a stream's Context ends when the peer aborts the
// stream, when this side closes it, and when the connection ends, whether
// it was asked for before or after; this side's CloseWrite does not end it.
func testStreamContext(t *testing.T, tr Transport) {
	CheckLeaks(t)
	p := newPair(t, tr)
	for _, early := range []bool{true, false} {
		when := "late"
		if early {
			when = "early"
		}
		for _, d := range p.directions() {
			t.Run(d.name+", peer aborts, "+when, func(t *testing.T) {
				w, r := Open(t, d.from, d.to)
				defer r.Close()
				var ctx context.Context
				if early {
					ctx = r.Context()
				}
				w.Close()
				if !early {
					ctx = r.Context()
				}
				waitCtx(t, ctx, true)
			})
			t.Run(d.name+", CloseWrite then Close, "+when, func(t *testing.T) {
				w, r := Open(t, d.from, d.to)
				defer r.Close()
				var ctx context.Context
				if early {
					ctx = w.Context()
				}
				if err := w.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				if !early {
					ctx = w.Context()
				}
				// The peer still reads: nothing ends the Context.
				waitCtx(t, ctx, false)
				w.Close()
				waitCtx(t, ctx, true)
			})
		}
	}
	t.Run("connection ends", func(t *testing.T) {
		p := newPair(t, tr)
		w, r := Open(t, p.Server, p.Client)
		defer w.Close()
		defer r.Close()
		ctx := r.Context()
		p.Server.Close(0, "bye")
		waitCtx(t, ctx, true)
	})
}

// waitCtx checks that ctx ends (with a cause) within the test's bound, or
// if !done that it is still going a moment later.
func waitCtx(t *testing.T, ctx context.Context, done bool) {
	t.Helper()
	if !done {
		select {
		case <-ctx.Done():
			t.Fatalf("stream Context ended (%v), want it going", context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
		return
	}
	select {
	case <-ctx.Done():
	case <-Context(t).Done():
		t.Fatal("stream Context still going, want it ended")
	}
	if context.Cause(ctx) == nil {
		t.Error("stream Context ended without a cause")
	}
}

// testPacketsReceived: an idle connection's count moves on both sides
// (keepalives), and data moves it.
func testPacketsReceived(t *testing.T, tr Transport) {
	CheckLeaks(t)
	p := newPair(t, tr)
	for _, side := range []struct {
		name string
		c    interface{ PacketsReceived() uint64 }
	}{{"connector", p.Client}, {"edge", p.Server}} {
		n := side.c.PacketsReceived()
		deadline := time.Now().Add(15 * time.Second)
		for side.c.PacketsReceived() == n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: PacketsReceived stood at %d on an idle connection for 15s; want keepalives to move it", side.name, n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	n := p.Client.PacketsReceived()
	w, r := Open(t, p.Server, p.Client)
	defer w.Close()
	defer r.Close()
	if got := p.Client.PacketsReceived(); got == n {
		t.Errorf("PacketsReceived: %d before and after receiving a stream, want it to move", n)
	}
}
