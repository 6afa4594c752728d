package tunnelws

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunneltest"
)

// streamContext is the method the connector looks for on a stream.
type streamContext interface {
	Context() context.Context
}

// waitDone waits, within the test's bound, for ctx to end and checks why.
func waitDone(t *testing.T, ctx context.Context, wantCause error) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-tunneltest.Context(t).Done():
		t.Fatal("stream Context: still not done, want done")
	}
	if got := context.Cause(ctx); !errors.Is(got, wantCause) {
		t.Errorf("stream Context cause: got %v, want %v", got, wantCause)
	}
}

// TestStreamContextPeerStops: a stream's Context ends when the peer stops
// reading it, whether Context was called before that (early) or after
// (late). The edge opens the stream, as for a request; the connector's side
// is the one watched.
func TestStreamContextPeerStops(t *testing.T) {
	tunneltest.CheckLeaks(t)
	p := newPair(t, Config{}, Config{})
	for _, tc := range []struct {
		name       string
		closeWrite bool // the edge calls CloseWrite before Close
		want       error
	}{
		{"close after CloseWrite", true, errPeerStopped},
		{"abort", false, errStreamReset},
	} {
		for _, early := range []bool{true, false} {
			name := tc.name + ", late"
			if early {
				name = tc.name + ", early"
			}
			t.Run(name, func(t *testing.T) {
				edge, s := tunneltest.Open(t, p.Server, p.Client)
				defer s.Close()
				var ctx context.Context
				if early {
					ctx = s.(streamContext).Context()
					if err := ctx.Err(); err != nil {
						t.Fatalf("Context before the peer closed: got %v, want nil", err)
					}
				}
				if tc.closeWrite {
					edge.CloseWrite()
				}
				edge.Close()
				if !early {
					// Wait until the stream shows the peer's frame, then ask.
					if tc.closeWrite {
						var err error
						for i := 0; err == nil && i < 10000; i++ {
							_, err = s.Write(make([]byte, 64<<10))
						}
						if !errors.Is(err, errPeerStopped) {
							t.Fatalf("write after the peer's STOP: got %v, want %v", err, errPeerStopped)
						}
					} else if _, err := io.ReadAll(s); !errors.Is(err, errStreamReset) {
						t.Fatalf("read after the peer's RST: got %v, want %v", err, errStreamReset)
					}
					ctx = s.(streamContext).Context()
				}
				waitDone(t, ctx, tc.want)
			})
		}
	}
}

// TestStreamContextConnClose: a stream's Context ends with the connection,
// asked before it ended or after.
func TestStreamContextConnClose(t *testing.T) {
	tunneltest.CheckLeaks(t)
	p := newPair(t, Config{}, Config{})
	edge, s := tunneltest.Open(t, p.Server, p.Client)
	defer edge.Close()
	defer s.Close()
	edge2, s2 := tunneltest.Open(t, p.Server, p.Client)
	defer edge2.Close()
	defer s2.Close()
	ctx := s.(streamContext).Context()
	p.Server.Close(tunnel.CodeShutdown, "edge stopping")
	select {
	case <-ctx.Done():
	case <-tunneltest.Context(t).Done():
		t.Fatal("stream Context: still not done after the connection closed")
	}
	var ce *tunnel.CloseError
	if err := context.Cause(ctx); !errors.As(err, &ce) || ce.Code != tunnel.CodeShutdown {
		t.Errorf("cause: got %v, want the edge's close error", err)
	}
	<-p.Client.Done()
	if err := s2.(streamContext).Context().Err(); err == nil {
		t.Error("Context asked after the connection ended: got nil Err, want done")
	}
}

// TestStreamContextNormalExchange: a request and its response, both
// finished with CloseWrite, leave the Context alone until the stream is
// closed locally.
func TestStreamContextNormalExchange(t *testing.T) {
	tunneltest.CheckLeaks(t)
	p := newPair(t, Config{}, Config{})
	edge, s := tunneltest.Open(t, p.Server, p.Client)
	ctx := s.(streamContext).Context()
	req, resp := bytes.Repeat([]byte("q"), 100<<10), bytes.Repeat([]byte("r"), 1<<20)

	edgeDone := make(chan error, 1)
	go func() {
		if _, err := edge.Write(req); err != nil {
			edgeDone <- err
			return
		}
		if err := edge.CloseWrite(); err != nil {
			edgeDone <- err
			return
		}
		got, err := io.ReadAll(edge)
		if err == nil && !bytes.Equal(got, resp) {
			err = errors.New("edge: response differs")
		}
		edgeDone <- err
	}()
	got, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(got, req) {
		t.Fatalf("connector read: got %d bytes, %v; want %d bytes, io.EOF", len(got), err, len(req))
	}
	if err := ctx.Err(); err != nil {
		t.Fatalf("Context after the request: got %v, want nil", err)
	}
	if _, err := s.Write(resp); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := <-edgeDone; err != nil {
		t.Fatalf("edge: %v", err)
	}
	if err := ctx.Err(); err != nil {
		t.Fatalf("Context before the peer closed: got %v, want nil", err)
	}
	// Both sides finished: the edge's Close sends nothing. A later stream's
	// first bytes come after anything it could have sent.
	edge.Close()
	e2, s2 := tunneltest.Open(t, p.Server, p.Client)
	e2.Close()
	s2.Close()
	if err := ctx.Err(); err != nil {
		t.Errorf("Context after a finished exchange: got %v, want nil", err)
	}
	s.Close()
	waitDone(t, ctx, errStreamClosed)
}
