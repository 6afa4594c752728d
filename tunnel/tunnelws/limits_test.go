package tunnelws

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunneltest"
)

// TestMaxIncomingStreams: streams the peer opens past the cap are reset at
// once and never reach the accepting side or its buffers; the allowed one
// keeps working, and closing it frees its place.
func TestMaxIncomingStreams(t *testing.T) {
	p := newPair(t, Config{MaxIncomingStreams: 1}, Config{})
	ctx := tunneltest.Context(t)
	first, err := p.Client.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Write([]byte("control")); err != nil {
		t.Fatal(err)
	}
	accepted, err := p.Server.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Each extra stream is refused: the writer sees a reset (at the
	// latest once it filled the initial window).
	const extra = 50
	for i := range extra {
		s, err := p.Client.OpenStream(ctx)
		if err != nil {
			t.Fatalf("extra stream %d: open: %v", i, err)
		}
		if err := writeUntilError(s, 1<<20); !errors.Is(err, errStreamReset) {
			t.Fatalf("extra stream %d: writing: got %v, want a reset", i, err)
		}
		s.Close()
	}
	srv := p.Server.(*conn)
	srv.mu.Lock()
	states, incoming := len(srv.states), srv.incoming
	srv.mu.Unlock()
	if n := srv.sess.NumStreams(); n != 1 || states != 1 || incoming != 1 {
		t.Errorf("edge after %d refused streams: %d yamux streams, %d states, %d incoming; want 1, 1, 1", extra, n, states, incoming)
	}
	actx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if s, err := p.Server.AcceptStream(actx); err == nil {
		t.Fatalf("accepted a refused stream %v", s)
	}

	// The allowed stream still works both ways.
	got := make([]byte, len("control"))
	if _, err := io.ReadFull(accepted, got); err != nil || string(got) != "control" {
		t.Fatalf("control stream: read %q, %v", got, err)
	}
	if _, err := accepted.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(first, got[:2]); err != nil || string(got[:2]) != "ok" {
		t.Fatalf("control stream answer: read %q, %v", got[:2], err)
	}

	// Once it is closed, the peer may open another.
	first.Close()
	accepted.Close()
	w, r := tunneltest.Open(t, p.Client, p.Server)
	w.Close()
	r.Close()
}

// writeUntilError writes up to max bytes and returns the first error.
func writeUntilError(s tunnel.Stream, max int) error {
	chunk := bytes.Repeat([]byte{'x'}, 32<<10)
	for n := 0; n < max; n += len(chunk) {
		if _, err := s.Write(chunk); err != nil {
			return err
		}
	}
	return nil
}

// TestMaxIncomingBuffer: a peer that sends more on its streams than this
// side has read loses its connection with code 1; one that stays within the
// bound while this side reads keeps it, however much it sends in all.
// (The close code the peer gets is checked in e2e: its own write may fail
// first.)
func TestMaxIncomingBuffer(t *testing.T) {
	const max = 64 << 10
	t.Run("unread", func(t *testing.T) {
		p := newPair(t, Config{MaxIncomingBuffer: max}, Config{})
		s, err := p.Client.OpenStream(tunneltest.Context(t))
		if err != nil {
			t.Fatal(err)
		}
		writeUntilError(s, 1<<20) // the edge never reads
		select {
		case <-p.Server.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the connection outlived its unread bytes past the bound")
		}
		if err := p.Server.Err(); !errors.Is(err, errProtocol) {
			t.Fatalf("connection ended with %v, want a protocol error", err)
		}
		<-p.Client.Done()
	})
	t.Run("read", func(t *testing.T) {
		p := newPair(t, Config{MaxIncomingBuffer: max}, Config{})
		w, r := tunneltest.Open(t, p.Client, p.Server)
		// Sent in steps the reader takes in turn: never more than half
		// the bound unread, 4 MiB in all.
		chunk := make([]byte, max/2)
		for i := range 128 {
			if _, err := w.Write(chunk); err != nil {
				t.Fatalf("step %d: write: %v", i, err)
			}
			if _, err := io.ReadFull(r, chunk); err != nil {
				t.Fatalf("step %d: read: %v", i, err)
			}
		}
		// Closing streams with bytes unread gives their share back.
		for range 10 {
			w, r := tunneltest.Open(t, p.Client, p.Server)
			w.Write(make([]byte, max/4))
			w.Close()
			r.Close()
		}
		w2, r2 := tunneltest.Open(t, p.Client, p.Server)
		defer w2.Close()
		defer r2.Close()
		if _, err := w2.Write([]byte("still fine")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(r2, make([]byte, 10)); err != nil {
			t.Fatalf("after closing streams with unread bytes: %v", err)
		}
		if got := p.Server.(*conn).buffered.Load(); got != 0 {
			t.Errorf("unread bytes counted after reading everything: %d", got)
		}
	})
}
