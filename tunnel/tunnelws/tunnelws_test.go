package tunnelws

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunneltest"
)

// transport is this package for the conformance suite, with default
// configs.
var transport = tunneltest.Transport{
	Protocol: "websocket",
	Listen: func(addr string, server *tls.Config) (tunnel.Listener, error) {
		return Listen(addr, server, Config{})
	},
	Dial: func(ctx context.Context, addr string, client *tls.Config) (tunnel.Conn, error) {
		return Dial(ctx, addr, client, Config{})
	},
	IsReset:   func(err error) bool { return errors.Is(err, errStreamReset) },
	IsStopped: func(err error) bool { return errors.Is(err, errPeerStopped) },
}

// TestTransport runs the transport conformance suite.
func TestTransport(t *testing.T) {
	tunneltest.Run(t, transport)
}

// newPair listens on 127.0.0.1:0, dials it and accepts. Everything is
// closed, and waited for, at cleanup.
func newPair(t testing.TB, serverCfg, clientCfg Config) tunneltest.Pair {
	t.Helper()
	tt := tunneltest.NewTestPKI(t)
	ln, err := Listen("127.0.0.1:0", tt.Server, serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return dialPair(t, ln, tt.Client, clientCfg, ln.Addr().String())
}

// dialPair dials ln at addr and accepts.
func dialPair(t testing.TB, ln tunnel.Listener, clientTLS *tls.Config, clientCfg Config, addr string) tunneltest.Pair {
	t.Helper()
	return tunneltest.Connect(t, ln, func(ctx context.Context) (tunnel.Conn, error) {
		return Dial(ctx, addr, clientTLS, clientCfg)
	})
}

// TestCloseWriteThenCloseUnreadByPeer: the peer has not read anything yet
// when the writer closes, and is itself still sending; the data still all
// arrives (STOP, not RST).
func TestCloseWriteThenCloseUnreadByPeer(t *testing.T) {
	tunneltest.CheckLeaks(t)
	p := newPair(t, Config{}, Config{})
	w, r := tunneltest.Open(t, p.Client, p.Server)
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

// TestCloseWakesBlockedOps: Close from another goroutine ends this side's
// blocked Read and Write at once.
func TestCloseWakesBlockedOps(t *testing.T) {
	tunneltest.CheckLeaks(t)
	p := newPair(t, Config{}, Config{})
	s, peer := tunneltest.Open(t, p.Client, p.Server)
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
	tunneltest.CheckLeaks(t)
	p := newPair(t, Config{}, Config{})
	for i := range 50 {
		w, r := tunneltest.Open(t, p.Client, p.Server)
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
	w, r := tunneltest.Open(t, p.Client, p.Server)
	w.CloseWrite()
	io.ReadAll(r)
	r.CloseWrite()
	io.ReadAll(w)
	w.Close()
	r.Close()
	for _, side := range []struct {
		name string
		c    *conn
	}{{"connector", p.Client.(*conn)}, {"edge", p.Server.(*conn)}} {
		side.c.mu.Lock()
		states := len(side.c.states)
		side.c.mu.Unlock()
		if streams := side.c.sess.NumStreams(); states != 0 || streams != 0 {
			t.Errorf("%s after closing every stream: %d stream states, %d yamux streams; want 0, 0", side.name, states, streams)
		}
	}
}

// TestConnCloseFailsStreams: the streams of a closed connection fail with
// the connection's error, never a clean end.
func TestConnCloseFailsStreams(t *testing.T) {
	tunneltest.CheckLeaks(t)
	p := newPair(t, Config{}, Config{})
	w, r := tunneltest.Open(t, p.Server, p.Client)
	defer w.Close()
	defer r.Close()
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(r)
		done <- err
	}()
	p.Server.Close(tunnel.CodeShutdown, "edge stopping")
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
			tunneltest.CheckLeaks(t)
			p := newPair(t, Config{}, Config{})
			p.Client.Close(tc.code, tc.reason)
			<-p.Server.Done()
			var ce *tunnel.CloseError
			if err := p.Server.Err(); !errors.As(err, &ce) || ce.Code != tc.wantCode || ce.Reason != tc.wantReason {
				t.Errorf("peer Err: got %v, want code %d reason %q", err, tc.wantCode, tc.wantReason)
			}
		})
	}
}

// TestPeerGoneKeepalive: a peer that stops answering (its TCP connection
// still open) is found by the keepalive.
func TestPeerGoneKeepalive(t *testing.T) {
	tunneltest.CheckLeaks(t)
	ctx := tunneltest.Context(t)
	tt := tunneltest.NewTestPKI(t)
	ln, err := Listen("127.0.0.1:0", tt.Server, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// A TCP relay that stops forwarding when told, without closing.
	relay := newStallingRelay(t, ln.Addr().String())
	cfg := Config{KeepAliveInterval: 50 * time.Millisecond, ConnectionWriteTimeout: 200 * time.Millisecond}
	p := dialPair(t, ln, tt.Client, cfg, relay.addr())
	relay.stall()
	select {
	case <-p.Client.Done():
	case <-ctx.Done():
		t.Fatal("connector did not notice the silent edge")
	}
	if err := p.Client.Err(); err == nil || !bytes.Contains([]byte(err.Error()), []byte("keepalive")) {
		t.Errorf("Err: got %v, want a keepalive error", err)
	}
	relay.close()
}

// TestDialServerName: a ServerName in the TLS config is verified instead of
// the dialed host.
func TestDialServerName(t *testing.T) {
	tunneltest.CheckLeaks(t)
	tt := tunneltest.NewTestPKI(t)
	ln, err := Listen("127.0.0.1:0", tt.Server, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conf := tt.Client.Clone()
	conf.ServerName = "edge.test"
	p := dialPair(t, ln, conf, Config{}, ln.Addr().String())
	w, r := tunneltest.Open(t, p.Client, p.Server)
	w.Close()
	r.Close()
}

// TestOpenStreamWaitsForAccept: with AcceptBacklog of this side's streams
// not yet accepted by the peer, OpenStream waits until one is (or its
// context ends).
func TestOpenStreamWaitsForAccept(t *testing.T) {
	tunneltest.CheckLeaks(t)
	ctx := tunneltest.Context(t)
	p := newPair(t, Config{}, Config{AcceptBacklog: 1})
	first, err := p.Client.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if s, err := p.Client.OpenStream(short); !errors.Is(err, context.DeadlineExceeded) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("OpenStream over the backlog: got %v, want context.DeadlineExceeded", err)
	}

	// The edge accepts the first stream; a new one can be opened.
	r, err := p.Server.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The abandoned open above completes now and is closed by itself; the
	// edge may see it before the next one.
	w2, err := p.Client.OpenStream(ctx)
	if err != nil {
		t.Fatalf("OpenStream after the accept: %v", err)
	}
	w2.Write([]byte("second"))
	w2.CloseWrite()
	defer w2.Close()
	for {
		r2, err := p.Server.AcceptStream(ctx)
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

// TestOpenStreamCanceled: OpenStream checks its context even when the
// peer's backlog has room.
func TestOpenStreamCanceled(t *testing.T) {
	tunneltest.CheckLeaks(t)
	p := newPair(t, Config{}, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Client.OpenStream(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("OpenStream: got %v, want context.Canceled", err)
	}
}

// TestAddrs: the edge's side of a connection reports the listener's
// address and the connector's exact local address (the suite checks only
// the port).
func TestAddrs(t *testing.T) {
	tunneltest.CheckLeaks(t)
	p := newPair(t, Config{}, Config{})
	if got, want := p.Server.RemoteAddr().String(), p.Client.LocalAddr().String(); got != want {
		t.Errorf("server RemoteAddr: got %s, want the client's local address %s", got, want)
	}
	if got, want := p.Server.LocalAddr().String(), p.Listener.Addr().String(); got != want {
		t.Errorf("server LocalAddr: got %s, want the listener's %s", got, want)
	}
}

func TestBadConfigAndTLS(t *testing.T) {
	tt := tunneltest.NewTestPKI(t)
	ctx := tunneltest.Context(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		tls  *tls.Config
	}{
		{"window below yamux's minimum", Config{MaxStreamWindow: 1024}, tt.Server},
		{"negative backlog", Config{AcceptBacklog: -1}, tt.Server},
		{"negative timeout", Config{HandshakeTimeout: -time.Second}, tt.Server},
		{"no certificate", Config{}, &tls.Config{}},
		{"nil TLS config", Config{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ln, err := Listen("127.0.0.1:0", tc.tls, tc.cfg); err == nil {
				ln.Close()
				t.Errorf("Listen: got nil error, want one")
			}
			if tc.tls == tt.Server {
				if c, err := Dial(ctx, "127.0.0.1:1", tt.Client, tc.cfg); err == nil {
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
		{"zero", Config{}, 10000, 6 << 20, time.Second, 10 * time.Second, 10 * time.Second, 0, 0},
		{"set", Config{
			KeepAliveInterval: 3 * time.Second, ConnectionWriteTimeout: 3 * time.Second, MaxStreamWindow: 1 << 20,
			AcceptBacklog: 5, HandshakeTimeout: 4 * time.Second,
		}, 5, 1 << 20, 3 * time.Second, 3 * time.Second, 4 * time.Second, 0, 0},
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
