package tunneltest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/adit-dev/adit/tunnel"
)

// Transport describes a transport to Run. Every field is required.
type Transport struct {
	// Protocol is what Conn.Protocol must say: "quic" or "websocket".
	Protocol string
	// Listen listens on addr with the transport's default config.
	Listen func(addr string, server *tls.Config) (tunnel.Listener, error)
	// Dial dials addr with the transport's default config.
	Dial func(ctx context.Context, addr string, client *tls.Config) (tunnel.Conn, error)
	// IsReset reports whether err is what a stream's reader or writer gets
	// when the peer closed its stream without CloseWrite (an abort).
	IsReset func(err error) bool
	// IsStopped reports whether err is what a stream's writer gets when the
	// peer called CloseWrite and then Close (refusing further data).
	IsStopped func(err error) bool
}

// Run runs the conformance suite against tr, each test as a subtest with
// its own leak check.
func Run(t *testing.T, tr Transport) {
	for _, tc := range []struct {
		name string
		f    func(*testing.T, Transport)
	}{
		{"ControlAndRequestStreams", testControlAndRequestStreams},
		{"Echo8MiB", testEcho8MiB},
		{"CloseWriteThenClose", testCloseWriteThenClose},
		{"CloseWithoutCloseWrite", testCloseWithoutCloseWrite},
		{"CloseStopsPeerWrites", testCloseStopsPeerWrites},
		{"ConnCloseError", testConnCloseError},
		{"DialWrongCA", testDialWrongCA},
		{"DialWrongName", testDialWrongName},
		{"ManyConcurrentStreams", testManyConcurrentStreams},
		{"ListenerCloseKeepsConns", testListenerCloseKeepsConns},
		{"AcceptCanceled", testAcceptCanceled},
		{"AddrsAndProtocol", testAddrsAndProtocol},
		{"ListenBadAddr", testListenBadAddr},
		{"StreamContext", testStreamContext},     // contract.go
		{"PacketsReceived", testPacketsReceived}, // contract.go
	} {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, tr) })
	}
}

// listen listens on 127.0.0.1:0 with pki's server config, closed at
// cleanup.
func listen(t *testing.T, tr Transport, pki PKI) tunnel.Listener {
	t.Helper()
	ln, err := tr.Listen("127.0.0.1:0", pki.Server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// newPair listens, dials and accepts with a fresh PKI.
func newPair(t *testing.T, tr Transport) Pair {
	t.Helper()
	pki := NewTestPKI(t)
	ln := listen(t, tr, pki)
	return Connect(t, ln, func(ctx context.Context) (tunnel.Conn, error) {
		return tr.Dial(ctx, ln.Addr().String(), pki.Client)
	})
}

// testControlAndRequestStreams runs the protocol's two stream kinds over a
// real connection: the connector's control stream and an edge-opened
// request stream.
func testControlAndRequestStreams(t *testing.T, tr Transport) {
	CheckLeaks(t)
	ctx := Context(t)
	p := newPair(t, tr)

	// Connector → edge: register on the control stream.
	ctrl, err := p.Client.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ctrl.Close()
	reg := &tunnel.RegisterRequest{TunnelID: "t1", Secret: []byte("s3cret"), ConnIndex: 2, Protocol: tunnel.ProtocolVersion}
	if err := tunnel.WriteMessage(ctrl, reg); err != nil {
		t.Fatal(err)
	}
	edgeCtrl, err := p.Server.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer edgeCtrl.Close()
	var gotReg tunnel.RegisterRequest
	if err := tunnel.ReadMessage(bufio.NewReader(edgeCtrl), &gotReg); err != nil {
		t.Fatal(err)
	}
	if gotReg.TunnelID != "t1" || string(gotReg.Secret) != "s3cret" || gotReg.ConnIndex != 2 {
		t.Errorf("edge got %+v, want %+v", gotReg, reg)
	}
	if err := tunnel.WriteMessage(edgeCtrl, &tunnel.RegisterResponse{ConnectionID: "c1", EdgeNode: "e1"}); err != nil {
		t.Fatal(err)
	}
	var resp tunnel.RegisterResponse
	if err := tunnel.ReadMessage(bufio.NewReader(ctrl), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.ConnectionID != "c1" {
		t.Errorf("connector got connection ID %q, want %q", resp.ConnectionID, "c1")
	}

	// Edge → connector: one HTTP request with a body and trailers.
	req, err := p.Server.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer req.Close()
	tunnel.WriteMessage(req, &tunnel.RequestHeader{Type: tunnel.StreamHTTP, Method: "POST", Host: "a.example", Path: "/"})
	bw := tunnel.NewBodyWriter(req)
	bw.Write([]byte("request body"))
	bw.Close()
	req.CloseWrite()

	cs, err := p.Client.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	csr := bufio.NewReader(cs)
	var rh tunnel.RequestHeader
	if err := tunnel.ReadMessage(csr, &rh); err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(tunnel.NewBodyReader(csr, nil))
	if err != nil || string(body) != "request body" || rh.Method != "POST" {
		t.Fatalf("connector got %s %q, %v; want POST %q", rh.Method, body, err, "request body")
	}
	tunnel.WriteMessage(cs, &tunnel.ResponseHeader{Status: 200, ContentLength: -1, Trailer: []string{"Grpc-Status"}})
	cbw := tunnel.NewBodyWriter(cs)
	cbw.Write([]byte("response body"))
	cbw.CloseWithTrailers(http.Header{"Grpc-Status": {"0"}})
	cs.CloseWrite()

	rr := bufio.NewReader(req)
	var rsh tunnel.ResponseHeader
	if err := tunnel.ReadMessage(rr, &rsh); err != nil {
		t.Fatal(err)
	}
	trailer := http.Header{}
	body, err = io.ReadAll(tunnel.NewBodyReader(rr, trailer))
	if err != nil || string(body) != "response body" || rsh.Status != 200 || trailer.Get("Grpc-Status") != "0" {
		t.Fatalf("edge got %d %q trailers %v, %v; want 200 %q with Grpc-Status 0", rsh.Status, body, trailer, err, "response body")
	}
	if _, err := rr.ReadByte(); err != io.EOF {
		t.Errorf("after the response: got %v, want io.EOF", err)
	}
}

// direction is one way of opening a stream on a pair.
type direction struct {
	name     string
	from, to tunnel.Conn
}

// directions are both ways of opening a stream on p: the connector's
// (control streams) and the edge's (request streams).
func (p Pair) directions() []direction {
	return []direction{{"connector opens", p.Client, p.Server}, {"edge opens", p.Server, p.Client}}
}

// testEcho8MiB sends 8 MiB each way on one stream, in both directions of
// opening.
func testEcho8MiB(t *testing.T, tr Transport) {
	CheckLeaks(t)
	p := newPair(t, tr)
	for _, dir := range p.directions() {
		t.Run(dir.name, func(t *testing.T) {
			s, echo := Open(t, dir.from, dir.to)
			defer s.Close()
			go func() {
				defer echo.Close()
				io.Copy(echo, echo)
				echo.CloseWrite()
			}()

			const size = 8 << 20
			data := make([]byte, size)
			rand.Read(data)
			want := sha256.Sum256(data)
			werr := make(chan error, 1)
			go func() {
				_, err := s.Write(data)
				if err == nil {
					err = s.CloseWrite()
				}
				werr <- err
			}()
			h := sha256.New()
			n, err := io.Copy(h, s)
			if err != nil {
				t.Fatalf("reading the echo: %v after %d bytes", err, n)
			}
			if err := <-werr; err != nil {
				t.Fatalf("writing: %v", err)
			}
			if n != size {
				t.Errorf("echo: got %d bytes, want %d", n, size)
			}
			if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
				t.Errorf("echo checksum: got %x, want %x", got, want)
			}
		})
	}
}

// testCloseWriteThenClose: everything written before CloseWrite arrives,
// then io.EOF, even when the writer calls Close right after CloseWrite
// with data still in flight.
func testCloseWriteThenClose(t *testing.T, tr Transport) {
	CheckLeaks(t)
	p := newPair(t, tr)
	for _, tc := range []struct {
		name string
		size int
		edge bool // the edge writes; else the connector
	}{
		{"connector 1B", 1, false},
		{"connector 64KiB", 64 << 10, false},
		{"connector 10MiB", 10 << 20, false}, // more than the 6 MiB stream window
		{"edge 1B", 1, true},
		{"edge 10MiB", 10 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, to := p.Client, p.Server
			if tc.edge {
				from, to = p.Server, p.Client
			}
			w, r := Open(t, from, to)
			defer r.Close()
			data := make([]byte, tc.size)
			rand.Read(data)

			type result struct {
				data []byte
				err  error
			}
			got := make(chan result, 1)
			go func() {
				b, err := io.ReadAll(r)
				got <- result{b, err}
			}()
			if _, err := w.Write(data); err != nil {
				t.Fatal(err)
			}
			if err := w.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			res := <-got
			if res.err != nil {
				t.Fatalf("reader: got %v after %d bytes, want io.EOF after %d", res.err, len(res.data), tc.size)
			}
			if !bytes.Equal(res.data, data) {
				t.Errorf("reader: got %d bytes, want %d (equal: false)", len(res.data), tc.size)
			}
		})
	}
}

// testCloseWithoutCloseWrite: a stream closed without CloseWrite is an
// error for the peer, never a clean end.
func testCloseWithoutCloseWrite(t *testing.T, tr Transport) {
	CheckLeaks(t)
	p := newPair(t, tr)
	for _, tc := range []struct {
		name     string
		edge     bool
		trailing []byte // written after the opening hello, before Close
	}{
		{"connector, nothing more", false, nil},
		{"connector, partial body", false, []byte("partial")},
		{"edge, 1MiB", true, make([]byte, 1<<20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, to := p.Client, p.Server
			if tc.edge {
				from, to = p.Server, p.Client
			}
			w, r := Open(t, from, to)
			defer r.Close()
			done := make(chan error, 1)
			go func() {
				_, err := io.ReadAll(r)
				done <- err
			}()
			if len(tc.trailing) > 0 {
				w.Write(tc.trailing)
			}
			w.Close()
			err := <-done
			if err == nil || errors.Is(err, io.EOF) {
				t.Fatalf("reader: got %v, want a stream error", err)
			}
			if !tr.IsReset(err) {
				t.Errorf("reader: got %T %v, want the %s stream reset error", err, err, tr.Protocol)
			}
		})
	}
}

// testCloseStopsPeerWrites: Close also refuses the peer's data; the peer's
// writes fail instead of blocking on flow control.
func testCloseStopsPeerWrites(t *testing.T, tr Transport) {
	CheckLeaks(t)
	p := newPair(t, tr)
	for _, tc := range []struct {
		name       string
		closeWrite bool // the closer calls CloseWrite first
		want       func(error) bool
		wantName   string
	}{
		{"abort", false, tr.IsReset, "stream reset"},
		{"after CloseWrite", true, tr.IsStopped, "stream stopped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, r := Open(t, p.Client, p.Server)
			defer w.Close()
			if tc.closeWrite {
				r.CloseWrite()
			}
			r.Close()
			buf := make([]byte, 64<<10)
			for i := 0; ; i++ {
				if _, err := w.Write(buf); err != nil {
					if !tc.want(err) {
						t.Errorf("write %d: got %T %v, want the %s %s error", i, err, err, tr.Protocol, tc.wantName)
					}
					break
				}
				if i > 10000 { // 640 MiB: far past every window
					t.Fatal("writes to a closed stream keep succeeding")
				}
			}
		})
	}
}

func testConnCloseError(t *testing.T, tr Transport) {
	for _, tc := range []struct {
		name   string
		edge   bool // the edge closes; else the connector
		code   tunnel.ErrorCode
		reason string
	}{
		{"edge deletes tunnel", true, tunnel.CodeTunnelDeleted, "tunnel deleted"},
		{"edge refuses", true, tunnel.CodeUnauthorized, "bad tunnel secret"},
		{"connector shuts down", false, tunnel.CodeShutdown, "connector stopping"},
		{"normal, no reason", false, tunnel.CodeNormal, ""},
		{"removed, unicode reason", true, tunnel.CodeRemoved, "entfernt – ✓"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			CheckLeaks(t)
			ctx := Context(t)
			p := newPair(t, tr)
			closer, peer := p.Client, p.Server
			if tc.edge {
				closer, peer = p.Server, p.Client
			}
			if err := peer.Err(); err != nil {
				t.Errorf("Err before the close: got %v, want nil", err)
			}
			accepted := make(chan error, 1)
			go func() {
				_, err := peer.AcceptStream(ctx)
				accepted <- err
			}()
			if err := closer.Close(tc.code, tc.reason); err != nil {
				t.Fatalf("Close: %v", err)
			}
			select {
			case <-peer.Done():
			case <-ctx.Done():
				t.Fatal("peer's Done not closed")
			}
			for _, side := range []struct {
				name   string
				c      tunnel.Conn
				remote bool
			}{{"peer", peer, true}, {"closer", closer, false}} {
				<-side.c.Done()
				var ce *tunnel.CloseError
				if err := side.c.Err(); !errors.As(err, &ce) {
					t.Errorf("%s Err: got %T %v, want *tunnel.CloseError", side.name, err, err)
					continue
				}
				want := tunnel.CloseError{Code: tc.code, Reason: tc.reason, Remote: side.remote}
				if *ce != want {
					t.Errorf("%s Err: got %+v, want %+v", side.name, *ce, want)
				}
			}
			if err := <-accepted; err == nil {
				t.Errorf("AcceptStream on a closed connection: got nil error")
			}
			if _, err := peer.OpenStream(ctx); err == nil {
				t.Errorf("OpenStream on a closed connection: got nil error")
			}
		})
	}
}

func testDialWrongCA(t *testing.T, tr Transport) {
	CheckLeaks(t)
	ctx := Context(t)
	ln := listen(t, tr, NewTestPKI(t))
	other := NewTestPKI(t) // a CA that did not sign the edge's certificate
	c, err := tr.Dial(ctx, ln.Addr().String(), other.Client)
	if err == nil {
		c.Close(tunnel.CodeNormal, "")
		t.Fatal("Dial with the wrong CA: got a connection, want an error")
	}
	var uae x509.UnknownAuthorityError
	if !errors.As(err, &uae) {
		t.Errorf("Dial with the wrong CA: got %v, want an x509.UnknownAuthorityError", err)
	}
}

func testDialWrongName(t *testing.T, tr Transport) {
	CheckLeaks(t)
	ctx := Context(t)
	pki := NewTestPKI(t)
	ln := listen(t, tr, pki)
	conf := pki.Client.Clone()
	conf.ServerName = "not-the-edge.test"
	c, err := tr.Dial(ctx, ln.Addr().String(), conf)
	if err == nil {
		c.Close(tunnel.CodeNormal, "")
		t.Fatal("Dial with the wrong server name: got a connection, want an error")
	}
	var he x509.HostnameError
	if !errors.As(err, &he) {
		t.Errorf("got %v, want an x509.HostnameError", err)
	}
}

// testManyConcurrentStreams runs 500 streams at once each way, each
// echoing its own payload.
func testManyConcurrentStreams(t *testing.T, tr Transport) {
	CheckLeaks(t)
	p := newPair(t, tr)
	for _, dir := range p.directions() {
		t.Run(dir.name, func(t *testing.T) {
			ctx := Context(t)
			const streams = 500

			var echoes sync.WaitGroup
			acceptErr := make(chan error, 1)
			go func() {
				for range streams {
					s, err := dir.to.AcceptStream(ctx)
					if err != nil {
						acceptErr <- err
						return
					}
					echoes.Go(func() {
						defer s.Close()
						io.Copy(s, s)
						s.CloseWrite()
					})
				}
				acceptErr <- nil
			}()

			var wg sync.WaitGroup
			errs := make(chan error, streams)
			for i := range streams {
				wg.Go(func() {
					errs <- echoOnce(ctx, dir.from, i)
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			if err := <-acceptErr; err != nil {
				t.Fatalf("AcceptStream: %v", err)
			}
			echoes.Wait()
		})
	}
}

func echoOnce(ctx context.Context, c tunnel.Conn, i int) error {
	s, err := c.OpenStream(ctx)
	if err != nil {
		return fmt.Errorf("stream %d: open: %w", i, err)
	}
	defer s.Close()
	msg := binary.BigEndian.AppendUint32(nil, uint32(i))
	msg = append(msg, bytes.Repeat([]byte{byte(i)}, 4096+i)...)
	if _, err := s.Write(msg); err != nil {
		return fmt.Errorf("stream %d: write: %w", i, err)
	}
	if err := s.CloseWrite(); err != nil {
		return fmt.Errorf("stream %d: close write: %w", i, err)
	}
	got, err := io.ReadAll(s)
	if err != nil {
		return fmt.Errorf("stream %d: read: %w", i, err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("stream %d: got %d bytes back, want %d (equal: false)", i, len(got), len(msg))
	}
	return nil
}

// testListenerCloseKeepsConns: closing the listener stops new connections
// but leaves established ones working, so an edge can drain.
func testListenerCloseKeepsConns(t *testing.T, tr Transport) {
	CheckLeaks(t)
	ctx := Context(t)
	p := newPair(t, tr)
	if err := p.Listener.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Listener.Accept(ctx); err == nil {
		t.Error("Accept on a closed listener: got nil error")
	}
	w, r := Open(t, p.Server, p.Client)
	w.CloseWrite()
	if b, err := io.ReadAll(r); err != nil || len(b) != 0 {
		t.Errorf("after the listener closed: got %q, %v; want EOF", b, err)
	}
	w.Close()
	r.Close()
}

func testAcceptCanceled(t *testing.T, tr Transport) {
	CheckLeaks(t)
	p := newPair(t, tr)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Listener.Accept(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Listener.Accept: got %v, want context.Canceled", err)
	}
	if _, err := p.Client.AcceptStream(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("AcceptStream: got %v, want context.Canceled", err)
	}
}

// testAddrsAndProtocol checks what holds for every transport; exact
// address forms are the transport's own tests'.
func testAddrsAndProtocol(t *testing.T, tr Transport) {
	CheckLeaks(t)
	p := newPair(t, tr)
	for _, c := range []tunnel.Conn{p.Client, p.Server} {
		if got := c.Protocol(); got != tr.Protocol {
			t.Errorf("Protocol: got %q, want %q", got, tr.Protocol)
		}
	}
	if got, want := p.Client.RemoteAddr().String(), p.Listener.Addr().String(); got != want {
		t.Errorf("client RemoteAddr: got %s, want the listener's %s", got, want)
	}
	if got, want := port(t, p.Server.RemoteAddr()), port(t, p.Client.LocalAddr()); got != want {
		t.Errorf("server RemoteAddr port: got %s, want the client's local port %s", got, want)
	}
}

func port(t *testing.T, a net.Addr) string {
	t.Helper()
	_, p, err := net.SplitHostPort(a.String())
	if err != nil {
		t.Fatalf("address %s: %v", a, err)
	}
	return p
}

func testListenBadAddr(t *testing.T, tr Transport) {
	pki := NewTestPKI(t)
	if ln, err := tr.Listen("127.0.0.1:notaport", pki.Server); err == nil {
		ln.Close()
		t.Error("Listen on a bad address: got nil error")
	}
}
