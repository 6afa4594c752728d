package tunnelws

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/adit-dev/adit/tunnel"
)

// testTLS is a throwaway CA and an edge certificate for 127.0.0.1 and
// edge.test signed by it.
type testTLS struct {
	server *tls.Config // the edge: serves the leaf
	client *tls.Config // the connector: trusts only the CA
}

func newTestTLS(t testing.TB) testTLS {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "adit test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "edge"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"edge.test", "localhost"},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testTLS{
		server: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}},
		client: &tls.Config{RootCAs: pool},
	}
}

// checkLeaks verifies, after every other cleanup of the test, that no
// goroutine is left. Call it first.
func checkLeaks(t *testing.T) {
	t.Cleanup(func() {
		// net/http lingers 500ms after answering a bad request before it
		// closes the connection (closeWriteAndWait), longer than one
		// goleak.Find retries. Give it a few.
		for i := 0; i < 5 && goleak.Find() != nil; i++ {
		}
		goleak.VerifyNone(t)
	})
}

// testCtx is the test's context, bounded so a hang fails instead of
// stalling the suite.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type pair struct {
	ln     tunnel.Listener
	client tunnel.Conn // the connector's side, from Dial
	server tunnel.Conn // the edge's side, from Accept
}

// newPair listens on 127.0.0.1:0, dials it and accepts. Everything is
// closed, and waited for, at cleanup.
func newPair(t testing.TB, serverCfg, clientCfg Config) pair {
	t.Helper()
	tt := newTestTLS(t)
	ln, err := Listen("127.0.0.1:0", tt.server, serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return dialPair(t, ln, tt.client, clientCfg, ln.Addr().String())
}

// dialPair dials ln at addr and accepts.
func dialPair(t testing.TB, ln tunnel.Listener, clientTLS *tls.Config, clientCfg Config, addr string) pair {
	t.Helper()
	ctx := testCtx(t)
	type accepted struct {
		c   tunnel.Conn
		err error
	}
	ch := make(chan accepted, 1)
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		c, err := ln.Accept(actx)
		ch <- accepted{c, err}
	}()
	client, err := Dial(ctx, addr, clientTLS, clientCfg)
	if err != nil {
		cancel()
		<-ch
		t.Fatalf("Dial: %v", err)
	}
	a := <-ch
	if a.err != nil {
		client.Close(tunnel.CodeNormal, "")
		t.Fatalf("Accept: %v", a.err)
	}
	p := pair{ln: ln, client: client, server: a.c}
	t.Cleanup(func() {
		p.client.Close(tunnel.CodeNormal, "test done")
		p.server.Close(tunnel.CodeNormal, "test done")
		<-p.client.Done()
		<-p.server.Done()
	})
	return p
}

// open opens a stream on from and accepts it on to, checking that the
// first bytes arrive.
func open(t *testing.T, from, to tunnel.Conn) (opened, accepted tunnel.Stream) {
	t.Helper()
	ctx := testCtx(t)
	s, err := from.OpenStream(ctx)
	if err != nil {
		t.Fatalf("OpenStream: %v", err)
	}
	if _, err := s.Write([]byte("hello")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	a, err := to.AcceptStream(ctx)
	if err != nil {
		t.Fatalf("AcceptStream: %v", err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("first bytes: got %q, %v; want %q", buf, err, "hello")
	}
	return s, a
}

// TestControlAndRequestStreams runs the protocol's two stream kinds over a
// real connection: the connector's control stream and an edge-opened
// request stream.
func TestControlAndRequestStreams(t *testing.T) {
	checkLeaks(t)
	ctx := testCtx(t)
	p := newPair(t, Config{}, Config{})

	// Connector → edge: register on the control stream.
	ctrl, err := p.client.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ctrl.Close()
	reg := &tunnel.RegisterRequest{TunnelID: "t1", Secret: []byte("s3cret"), ConnIndex: 2, Protocol: tunnel.ProtocolVersion}
	if err := tunnel.WriteMessage(ctrl, reg); err != nil {
		t.Fatal(err)
	}
	edgeCtrl, err := p.server.AcceptStream(ctx)
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
	req, err := p.server.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer req.Close()
	tunnel.WriteMessage(req, &tunnel.RequestHeader{Type: tunnel.StreamHTTP, Method: "POST", Host: "a.example", Path: "/"})
	bw := tunnel.NewBodyWriter(req)
	bw.Write([]byte("request body"))
	bw.Close()
	req.CloseWrite()

	cs, err := p.client.AcceptStream(ctx)
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

// TestEcho8MiB sends 8 MiB each way on one stream, in both directions of
// opening.
func TestEcho8MiB(t *testing.T) {
	checkLeaks(t)
	p := newPair(t, Config{}, Config{})
	for _, dir := range []struct {
		name     string
		from, to func() tunnel.Conn
	}{
		{"connector opens", func() tunnel.Conn { return p.client }, func() tunnel.Conn { return p.server }},
		{"edge opens", func() tunnel.Conn { return p.server }, func() tunnel.Conn { return p.client }},
	} {
		t.Run(dir.name, func(t *testing.T) {
			s, echo := open(t, dir.from(), dir.to())
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

// TestCloseWriteThenClose: everything written before CloseWrite arrives,
// then io.EOF, even when the writer calls Close right after CloseWrite
// with data still in flight.
func TestCloseWriteThenClose(t *testing.T) {
	checkLeaks(t)
	p := newPair(t, Config{}, Config{})
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
			from, to := p.client, p.server
			if tc.edge {
				from, to = p.server, p.client
			}
			w, r := open(t, from, to)
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

// TestCloseWriteThenCloseUnreadByPeer: the peer has not read anything yet
// when the writer closes, and is itself still sending; the data still all
// arrives (STOP, not RST).
func TestCloseWriteThenCloseUnreadByPeer(t *testing.T) {
	checkLeaks(t)
	p := newPair(t, Config{}, Config{})
	w, r := open(t, p.client, p.server)
	defer r.Close()
	data := make([]byte, 1<<20)
	rand.Read(data)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	w.CloseWrite()
	w.Close()
	// r has written nothing and not closed its write side: w's Close sent
	// STOP. r's writes fail, but everything w wrote is still there.
	var werr error
	for i := 0; werr == nil && i < 1000; i++ {
		_, werr = r.Write(make([]byte, 64<<10))
	}
	if !errors.Is(werr, errPeerStopped) {
		t.Errorf("peer's write after STOP: got %v, want %v", werr, errPeerStopped)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("peer read: got %d bytes, %v; want %d bytes, io.EOF", len(got), err, len(data))
	}
}

// TestCloseWithoutCloseWrite: a stream closed without CloseWrite is an
// error for the peer, never a clean end.
func TestCloseWithoutCloseWrite(t *testing.T) {
	checkLeaks(t)
	p := newPair(t, Config{}, Config{})
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
			from, to := p.client, p.server
			if tc.edge {
				from, to = p.server, p.client
			}
			w, r := open(t, from, to)
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
			if err := <-done; !errors.Is(err, errStreamReset) {
				t.Fatalf("reader: got %v, want %v", err, errStreamReset)
			}
		})
	}
}

// TestCloseStopsPeerWrites: Close also refuses the peer's data; the peer's
// writes fail instead of blocking on flow control.
func TestCloseStopsPeerWrites(t *testing.T) {
	checkLeaks(t)
	p := newPair(t, Config{}, Config{})
	for _, tc := range []struct {
		name       string
		closeWrite bool // the closer calls CloseWrite first
		want       error
	}{
		{"abort", false, errStreamReset},
		{"after CloseWrite", true, errPeerStopped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, r := open(t, p.client, p.server)
			defer w.Close()
			if tc.closeWrite {
				r.CloseWrite()
			}
			r.Close()
			buf := make([]byte, 64<<10)
			for i := 0; ; i++ {
				if _, err := w.Write(buf); err != nil {
					if !errors.Is(err, tc.want) {
						t.Errorf("write %d: got %v, want %v", i, err, tc.want)
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

// TestCloseWakesBlockedOps: Close from another goroutine ends this side's
// blocked Read and Write at once.
func TestCloseWakesBlockedOps(t *testing.T) {
	checkLeaks(t)
	p := newPair(t, Config{}, Config{})
	s, peer := open(t, p.client, p.server)
	defer peer.Close()
	errs := make(chan error, 2)
	go func() {
		_, err := s.Read(make([]byte, 1))
		errs <- err
	}()
	go func() {
		// Far more than the peer's window, which nobody reads.
		_, err := s.Write(make([]byte, 16<<20))
		errs <- err
	}()
	s.Close()
	for range 2 {
		if err := <-errs; !errors.Is(err, errStreamClosed) {
			t.Errorf("blocked op after Close: got %v, want %v", err, errStreamClosed)
		}
	}
}

// TestClosedStreamsAreForgotten: closing streams, however they ended,
// leaves no state behind in yamux or in this package.
func TestClosedStreamsAreForgotten(t *testing.T) {
	checkLeaks(t)
	p := newPair(t, Config{}, Config{})
	for i := range 50 {
		w, r := open(t, p.client, p.server)
		switch i % 3 {
		case 0: // abort
			w.Close()
			r.Close()
		case 1: // half-close then Close, the peer never finishing
			w.CloseWrite()
			w.Close()
			r.Close()
		case 2: // both sides finish
			w.CloseWrite()
			r.CloseWrite()
			io.ReadAll(r)
			io.ReadAll(w)
			w.Close()
			r.Close()
		}
	}
	// A round trip on a fresh stream: the local resets, queued before it,
	// have been processed on both sides (they go first at every frame
	// boundary).
	w, r := open(t, p.client, p.server)
	w.CloseWrite()
	io.ReadAll(r)
	r.CloseWrite()
	io.ReadAll(w)
	w.Close()
	r.Close()
	for _, side := range []struct {
		name string
		c    *conn
	}{{"connector", p.client.(*conn)}, {"edge", p.server.(*conn)}} {
		side.c.mu.Lock()
		states := len(side.c.states)
		side.c.mu.Unlock()
		if streams := side.c.sess.NumStreams(); states != 0 || streams != 0 {
			t.Errorf("%s after closing every stream: %d stream states, %d yamux streams; want 0, 0", side.name, states, streams)
		}
	}
}

func TestConnCloseError(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edge   bool // the edge closes; else the connector
		code   tunnel.ErrorCode
		reason string
		want   tunnel.CloseError // Remote is set per side
	}{
		{"edge deletes tunnel", true, tunnel.CodeTunnelDeleted, "tunnel deleted", tunnel.CloseError{Code: tunnel.CodeTunnelDeleted, Reason: "tunnel deleted"}},
		{"edge refuses", true, tunnel.CodeUnauthorized, "bad tunnel secret", tunnel.CloseError{Code: tunnel.CodeUnauthorized, Reason: "bad tunnel secret"}},
		{"connector shuts down", false, tunnel.CodeShutdown, "connector stopping", tunnel.CloseError{Code: tunnel.CodeShutdown, Reason: "connector stopping"}},
		{"normal, no reason", false, tunnel.CodeNormal, "", tunnel.CloseError{Code: tunnel.CodeNormal}},
		{"removed, unicode reason", true, tunnel.CodeRemoved, "entfernt – ✓", tunnel.CloseError{Code: tunnel.CodeRemoved, Reason: "entfernt – ✓"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			ctx := testCtx(t)
			p := newPair(t, Config{}, Config{})
			closer, peer := p.client, p.server
			if tc.edge {
				closer, peer = p.server, p.client
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
				want := tc.want
				want.Remote = side.remote
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

// TestConnCloseFailsStreams: the streams of a closed connection fail with
// the connection's error, never a clean end.
func TestConnCloseFailsStreams(t *testing.T) {
	checkLeaks(t)
	p := newPair(t, Config{}, Config{})
	w, r := open(t, p.server, p.client)
	defer w.Close()
	defer r.Close()
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(r)
		done <- err
	}()
	p.server.Close(tunnel.CodeShutdown, "edge stopping")
	err := <-done
	var ce *tunnel.CloseError
	if !errors.As(err, &ce) || ce.Code != tunnel.CodeShutdown || !ce.Remote {
		t.Errorf("read on the connector after the edge closed: got %v, want the remote close error", err)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Errorf("write on the closed edge side: got nil error")
	}
}

func TestCloseCodeAndReasonLimits(t *testing.T) {
	for _, tc := range []struct {
		name       string
		code       tunnel.ErrorCode
		reason     string
		wantCode   tunnel.ErrorCode
		wantReason string
	}{
		{"code past 999", 5000, "x", 999, "x"},
		{"long reason", 1, string(bytes.Repeat([]byte("a"), 200)), 1, string(bytes.Repeat([]byte("a"), maxCloseReason))},
		{"long reason cut at a rune", 1, string(bytes.Repeat([]byte("a"), 122)) + "äb", 1, string(bytes.Repeat([]byte("a"), 122))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			p := newPair(t, Config{}, Config{})
			p.client.Close(tc.code, tc.reason)
			<-p.server.Done()
			var ce *tunnel.CloseError
			if err := p.server.Err(); !errors.As(err, &ce) || ce.Code != tc.wantCode || ce.Reason != tc.wantReason {
				t.Errorf("peer Err: got %v, want code %d reason %q", err, tc.wantCode, tc.wantReason)
			}
		})
	}
}

// TestPeerGoneKeepalive: a peer that stops answering (its TCP connection
// still open) is found by the keepalive.
func TestPeerGoneKeepalive(t *testing.T) {
	checkLeaks(t)
	ctx := testCtx(t)
	tt := newTestTLS(t)
	ln, err := Listen("127.0.0.1:0", tt.server, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// A TCP relay that stops forwarding when told, without closing.
	relay := newStallingRelay(t, ln.Addr().String())
	cfg := Config{KeepAliveInterval: 50 * time.Millisecond, ConnectionWriteTimeout: 200 * time.Millisecond}
	p := dialPair(t, ln, tt.client, cfg, relay.addr())
	relay.stall()
	select {
	case <-p.client.Done():
	case <-ctx.Done():
		t.Fatal("connector did not notice the silent edge")
	}
	if err := p.client.Err(); err == nil || !bytes.Contains([]byte(err.Error()), []byte("keepalive")) {
		t.Errorf("Err: got %v, want a keepalive error", err)
	}
	relay.close()
}

func TestDialWrongCA(t *testing.T) {
	checkLeaks(t)
	ctx := testCtx(t)
	edge := newTestTLS(t)
	ln, err := Listen("127.0.0.1:0", edge.server, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	other := newTestTLS(t) // a CA that did not sign the edge's certificate
	c, err := Dial(ctx, ln.Addr().String(), other.client, Config{})
	if err == nil {
		c.Close(tunnel.CodeNormal, "")
		t.Fatal("Dial with the wrong CA: got a connection, want an error")
	}
	var uae x509.UnknownAuthorityError
	if !errors.As(err, &uae) {
		t.Errorf("Dial with the wrong CA: got %v, want an x509.UnknownAuthorityError", err)
	}
}

func TestDialWrongName(t *testing.T) {
	checkLeaks(t)
	ctx := testCtx(t)
	tt := newTestTLS(t)
	ln, err := Listen("127.0.0.1:0", tt.server, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conf := tt.client.Clone()
	conf.ServerName = "not-the-edge.test"
	c, err := Dial(ctx, ln.Addr().String(), conf, Config{})
	if err == nil {
		c.Close(tunnel.CodeNormal, "")
		t.Fatal("Dial with the wrong server name: got a connection, want an error")
	}
	var he x509.HostnameError
	if !errors.As(err, &he) {
		t.Errorf("got %v, want an x509.HostnameError", err)
	}
}

// TestDialServerName: a ServerName in the TLS config is verified instead of
// the dialed host.
func TestDialServerName(t *testing.T) {
	checkLeaks(t)
	tt := newTestTLS(t)
	ln, err := Listen("127.0.0.1:0", tt.server, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conf := tt.client.Clone()
	conf.ServerName = "edge.test"
	p := dialPair(t, ln, conf, Config{}, ln.Addr().String())
	w, r := open(t, p.client, p.server)
	w.Close()
	r.Close()
}

// TestManyConcurrentStreams runs 500 streams at once each way, each echoing
// its own payload.
func TestManyConcurrentStreams(t *testing.T) {
	checkLeaks(t)
	p := newPair(t, Config{}, Config{})
	for _, dir := range []struct {
		name     string
		from, to tunnel.Conn
	}{
		{"edge opens", p.server, p.client},
		{"connector opens", p.client, p.server},
	} {
		t.Run(dir.name, func(t *testing.T) {
			ctx := testCtx(t)
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

// TestOpenStreamWaitsForAccept: with AcceptBacklog of this side's streams
// not yet accepted by the peer, OpenStream waits until one is (or its
// context ends).
func TestOpenStreamWaitsForAccept(t *testing.T) {
	checkLeaks(t)
	ctx := testCtx(t)
	p := newPair(t, Config{}, Config{AcceptBacklog: 1})
	first, err := p.client.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if s, err := p.client.OpenStream(short); !errors.Is(err, context.DeadlineExceeded) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("OpenStream over the backlog: got %v, want context.DeadlineExceeded", err)
	}

	// The edge accepts the first stream; a new one can be opened.
	r, err := p.server.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The abandoned open above completes now and is closed by itself; the
	// edge may see it before the next one.
	w2, err := p.client.OpenStream(ctx)
	if err != nil {
		t.Fatalf("OpenStream after the accept: %v", err)
	}
	w2.Write([]byte("second"))
	w2.CloseWrite()
	defer w2.Close()
	for {
		r2, err := p.server.AcceptStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r2)
		r2.Close()
		if err == nil {
			if string(b) != "second" {
				t.Fatalf("second stream: got %q, want %q", b, "second")
			}
			break
		}
		if !errors.Is(err, errStreamReset) {
			t.Fatalf("abandoned stream: got %v, want %v", err, errStreamReset)
		}
	}
}

// TestListenerCloseKeepsConns: closing the listener stops new connections
// but leaves established ones working, so an edge can drain.
func TestListenerCloseKeepsConns(t *testing.T) {
	checkLeaks(t)
	ctx := testCtx(t)
	p := newPair(t, Config{}, Config{})
	if err := p.ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ln.Accept(ctx); err == nil {
		t.Error("Accept on a closed listener: got nil error")
	}
	w, r := open(t, p.server, p.client)
	w.CloseWrite()
	if b, err := io.ReadAll(r); err != nil || len(b) != 0 {
		t.Errorf("after the listener closed: got %q, %v; want EOF", b, err)
	}
	w.Close()
	r.Close()
}

func TestAcceptCanceled(t *testing.T) {
	checkLeaks(t)
	p := newPair(t, Config{}, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.ln.Accept(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Listener.Accept: got %v, want context.Canceled", err)
	}
	if _, err := p.client.AcceptStream(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("AcceptStream: got %v, want context.Canceled", err)
	}
	if _, err := p.client.OpenStream(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("OpenStream: got %v, want context.Canceled", err)
	}
}

func TestAddrsAndProtocol(t *testing.T) {
	checkLeaks(t)
	p := newPair(t, Config{}, Config{})
	for _, c := range []tunnel.Conn{p.client, p.server} {
		if got := c.Protocol(); got != "websocket" {
			t.Errorf("Protocol: got %q, want %q", got, "websocket")
		}
	}
	if got, want := p.client.RemoteAddr().String(), p.ln.Addr().String(); got != want {
		t.Errorf("client RemoteAddr: got %s, want the listener's %s", got, want)
	}
	if got, want := p.server.RemoteAddr().String(), p.client.LocalAddr().String(); got != want {
		t.Errorf("server RemoteAddr: got %s, want the client's local address %s", got, want)
	}
	if got, want := p.server.LocalAddr().String(), p.ln.Addr().String(); got != want {
		t.Errorf("server LocalAddr: got %s, want the listener's %s", got, want)
	}
}

func TestListenBadAddr(t *testing.T) {
	tt := newTestTLS(t)
	if ln, err := Listen("127.0.0.1:notaport", tt.server, Config{}); err == nil {
		ln.Close()
		t.Error("Listen on a bad address: got nil error")
	}
}

func TestBadConfigAndTLS(t *testing.T) {
	tt := newTestTLS(t)
	ctx := testCtx(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		tls  *tls.Config
	}{
		{"window below yamux's minimum", Config{MaxStreamWindow: 1024}, tt.server},
		{"negative backlog", Config{AcceptBacklog: -1}, tt.server},
		{"negative timeout", Config{HandshakeTimeout: -time.Second}, tt.server},
		{"no certificate", Config{}, &tls.Config{}},
		{"nil TLS config", Config{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ln, err := Listen("127.0.0.1:0", tc.tls, tc.cfg); err == nil {
				ln.Close()
				t.Errorf("Listen: got nil error, want one")
			}
			if tc.tls == tt.server {
				if c, err := Dial(ctx, "127.0.0.1:1", tt.client, tc.cfg); err == nil {
					c.Close(tunnel.CodeNormal, "")
					t.Errorf("Dial: got nil error, want one")
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		name                          string
		cfg                           Config
		backlog                       int
		window                        uint32
		keepAlive, write, handshake   time.Duration
		wantStreamOpen, wantStreamClo time.Duration
	}{
		{"zero", Config{}, 10000, 6 << 20, 2 * time.Second, 10 * time.Second, 10 * time.Second, 0, 0},
		{"set", Config{
			KeepAliveInterval: time.Second, ConnectionWriteTimeout: 3 * time.Second, MaxStreamWindow: 1 << 20,
			AcceptBacklog: 5, HandshakeTimeout: 4 * time.Second,
		}, 5, 1 << 20, time.Second, 3 * time.Second, 4 * time.Second, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yc := tc.cfg.yamuxConfig()
			if yc.AcceptBacklog != tc.backlog || yc.MaxStreamWindowSize != tc.window ||
				yc.KeepAliveInterval != tc.keepAlive || yc.ConnectionWriteTimeout != tc.write ||
				yc.StreamOpenTimeout != tc.wantStreamOpen || yc.StreamCloseTimeout != tc.wantStreamClo || yc.EnableKeepAlive {
				t.Errorf("yamux config: got %+v, want backlog %d, window %d, keepalive %s (run by conn), write timeout %s, no stream timers",
					yc, tc.backlog, tc.window, tc.keepAlive, tc.write)
			}
			if got := tc.cfg.handshakeTimeout(); got != tc.handshake {
				t.Errorf("handshake timeout: got %s, want %s", got, tc.handshake)
			}
		})
	}
}
