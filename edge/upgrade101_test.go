package edge

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/adit-dev/adit/edge/layer"
)

// failingHijack is a ResponseWriter whose hijacked connection fails every
// write: the client went away just before the 101.
type failingHijack struct {
	*httptest.ResponseRecorder
	conn net.Conn
}

func (w failingHijack) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.conn, bufio.NewReadWriter(bufio.NewReader(w.conn), bufio.NewWriter(w.conn)), nil
}

// pipeStream is a tunnel.Stream over one end of a net.Pipe.
type pipeStream struct{ net.Conn }

func (pipeStream) CloseWrite() error        { return nil }
func (pipeStream) Context() context.Context { return context.Background() }

// TestUpgrade101WriteFails: when the 101 cannot be written to the client,
// takeUpgrade gives the stream back and ends its context at once, and
// starts no pipe (issue 14: the write's error was shadowed, so none of
// this ran).
func TestUpgrade101WriteFails(t *testing.T) {
	client, clientFar := net.Pipe()
	clientFar.Close() // every write to client fails
	stream, streamFar := net.Pipe()
	defer streamFar.Close()

	released := false
	ctx, cancel := context.WithCancel(context.Background())
	up := &upgradeState{
		w:       failingHijack{ResponseRecorder: httptest.NewRecorder(), conn: client},
		ctx:     ctx,
		log:     slog.New(slog.DiscardHandler),
		cancel:  cancel,
		unwatch: func() bool { return true },
	}
	req := httptest.NewRequest("GET", "http://ws.test/", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	resp := &http.Response{
		StatusCode: http.StatusSwitchingProtocols,
		ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}},
		Body:   &rawBody{r: bufio.NewReader(pipeStream{stream}), s: pipeStream{stream}, release: func() { released = true }},
	}
	if err := takeUpgrade(req, resp, up, &layer.Request{ID: "r1"}); err != nil {
		t.Fatalf("takeUpgrade: %v, want nil (the client is gone, nothing to answer)", err)
	}
	if !released {
		t.Error("the stream was not given back when the 101 could not be written")
	}
	if ctx.Err() == nil {
		t.Error("the stream's context was not ended when the 101 could not be written")
	}
}
