package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/quic-go/quic-go"

	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunnelws"
)

// The tunnel port is open to anyone, and a connector is a party of its own
// (issue 13): what a connection can make the edge hold is bounded before and
// after registration. Measured as in upgrade_mem_test.go: the process's
// live memory (heap in use and stacks, after a GC) with the edge in-process,
// the attackers' own memory included.

const (
	floodConns      = 50        // attacking connections at once
	floodStreams    = 16        // extra streams each tries to open and fill
	floodPerStream  = 320 << 10 // bytes each tries to send on each (past yamux's initial window)
	floodMaxGrowth  = 100 << 20 // the bound on the edge's growth
	floodOpenWait   = 2 * time.Second
	floodWriteStall = time.Second
)

// TestTunnelPortFlood: 50 connections that open every stream they can and
// fill each, and stuff their control stream with a frame they never finish,
// leave the edge under 100 MB above its baseline, registered or not; a
// well-behaved connector keeps working meanwhile.
func TestTunnelPortFlood(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, proto string) {
		for _, registered := range []bool{false, true} {
			name := "unregistered"
			if registered {
				name = "registered"
			}
			t.Run(name, func(t *testing.T) { testTunnelPortFlood(t, proto, registered) })
		}
	})
}

func testTunnelPortFlood(t *testing.T, proto string, registered bool) {
	logs := &syncBuffer{}
	srv := startEdgeLogged(t, logs)
	tun := createTunnel(t, srv, "flooded", "flooded.test")
	bystander := createTunnel(t, srv, "bystander", "bystander.test")
	startConnector(t, srv, bystander, mustIngress(t, helloOrigin(t, "hello").URL), withProtocol(proto))
	// One attacker's worth of lazily made things first (pools, the first
	// stream of a transport), so they are not charged to the flood.
	warm := fakeDialProto(t, srv, proto)
	fakeRegister(t, warm, tun)
	warm.Close(tunnel.CodeNormal, "warm")

	before := liveMemory()
	conns := make([]tunnel.Conn, floodConns)
	var wg sync.WaitGroup
	for i := range conns {
		c := fakeDialProto(t, srv, proto)
		conns[i] = c
		wg.Go(func() { flood(c, tun, i, registered) })
	}
	wg.Wait()
	during := liveMemory()
	open := 0
	for _, c := range conns {
		select {
		case <-c.Done():
		default:
			open++
		}
	}
	growth := int64(during) - int64(before)
	t.Logf("%s, registered %v: %d connections flooded (%d still open); live memory %.1f → %.1f MB (%+.1f MB, %.0f KiB per connection)",
		proto, registered, floodConns, open, mb(before), mb(during), float64(growth)/(1<<20), float64(growth)/1024/floodConns)
	if growth > floodMaxGrowth {
		t.Errorf("live memory grew by %.1f MB under %d flooding connections, want under %.0f MB", float64(growth)/(1<<20), floodConns, float64(floodMaxGrowth)/(1<<20))
	}
	if code, body := getVia(srv.HTTPAddr().String(), "bystander.test"); code != 200 || body != "hello" {
		t.Errorf("a well-behaved tunnel during the flood: got %d %q, want 200 hello", code, body)
	}
	for _, c := range conns {
		c.Close(tunnel.CodeNormal, "flood over")
	}
}

// flood is one attacking connection: on the control stream, a register
// frame (or, registered, a control frame) announced at nearly the largest
// size the edge reads and never finished; every other connection also
// sends as much more there as the transport takes; then extra streams,
// each filled past its initial window. It returns once every write has
// failed, finished or stalled on flow control (stalled writes stay
// blocked until the connection ends).
func flood(c tunnel.Conn, tun tunnelFixture, index int, registered bool) {
	var ctrl tunnel.Stream
	if registered {
		ctrl = registerStream(c, tun, index)
		if ctrl == nil {
			return
		}
	} else {
		var err error
		if ctrl, err = openStreamWithin(c, floodOpenWait); err != nil {
			return
		}
	}
	typ := tunnel.FrameRegister
	if registered {
		typ = tunnel.FrameUnregister
	}
	const announced = 60 << 10
	ctrl.Write(tunnel.AppendFrameHeader(nil, typ, announced))
	if index%2 == 0 {
		writeStalled(ctrl, 8<<20)
	} else {
		writeStalled(ctrl, announced-1)
	}
	for range floodStreams {
		s, err := openStreamWithin(c, floodOpenWait)
		if err != nil {
			return // QUIC: the edge grants no more streams
		}
		writeStalled(s, floodPerStream)
	}
}

// registerStream registers c with a connector ID of its own, or returns
// nil.
func registerStream(c tunnel.Conn, tun tunnelFixture, index int) tunnel.Stream {
	ctrl, err := openStreamWithin(c, floodOpenWait)
	if err != nil {
		return nil
	}
	err = tunnel.WriteMessage(ctrl, &tunnel.RegisterRequest{TunnelID: tun.ID, Secret: tun.Secret, ConnIndex: uint32(index),
		ConnectorID: uuid.NewString(), Protocol: tunnel.ProtocolVersion})
	if err != nil {
		return nil
	}
	var resp tunnel.RegisterResponse
	if err := tunnel.ReadMessage(bufio.NewReader(ctrl), &resp); err != nil || resp.Error != "" {
		return nil
	}
	return ctrl
}

func openStreamWithin(c tunnel.Conn, d time.Duration) (tunnel.Stream, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return c.OpenStream(ctx)
}

// writeStalled writes n bytes to s, and returns once that is done, a
// write failed, or no write has completed for floodWriteStall (flow
// control holds it); the blocked write stays behind.
func writeStalled(s tunnel.Stream, n int) {
	progress := make(chan bool)
	go func() {
		defer close(progress)
		for sent := 0; sent < n; {
			chunk := make([]byte, min(32<<10, n-sent))
			k, err := s.Write(chunk)
			sent += k
			if err != nil {
				return
			}
			select {
			case progress <- true:
			default:
			}
		}
	}()
	for {
		select {
		case _, ok := <-progress:
			if !ok {
				return
			}
		case <-time.After(floodWriteStall):
			return
		}
	}
}

// fakeDialProto dials the edge's tunnel port over proto as a connector
// would.
func fakeDialProto(t testing.TB, srv *edge.Server, proto string) tunnel.Conn {
	t.Helper()
	if proto == "quic" {
		return fakeDial(t, srv)
	}
	return fakeDialWith(t, func(ctx context.Context, tc *tls.Config) (tunnel.Conn, error) {
		return tunnelws.Dial(ctx, srv.TunnelTCPAddr().String(), tc, tunnelws.Config{})
	}, srv)
}

// liveMemory is the heap in use and the goroutine stacks after a GC.
func liveMemory() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

// TestRegisteringPerAddress: connections from one address that do not
// register are capped; one past the cap is closed at once with code 4
// (edge busy).
func TestRegisteringPerAddress(t *testing.T) {
	srv := startEdgeLogged(t, &syncBuffer{})
	tun := createTunnel(t, srv, "crowded", "crowded.test")
	const cap = 32 // edge.maxRegisteringPerAddr
	idle := make([]tunnel.Conn, 0, cap)
	for range cap {
		c := fakeDialProto(t, srv, "websocket")
		s, err := openStreamWithin(c, floodOpenWait)
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte{byte(tunnel.FrameRegister)}) // and nothing more
		idle = append(idle, c)
	}
	// The edge counts a connection once it has accepted it, which may
	// come after the dial returned: one the edge had not counted yet may
	// be refused in its stead, and a new one may take its place. Keep
	// each new one open (closing it would free the place it holds) until
	// one is refused.
	var extra tunnel.Conn
	deadline := time.Now().Add(8 * time.Second) // the idle ones hold their places for registerTimeout, 10s
	for {
		extra = fakeDial(t, srv)
		select {
		case <-extra.Done():
		case <-time.After(2 * time.Second):
		}
		if extra.Err() != nil || time.Now().After(deadline) {
			break
		}
		idle = append(idle, extra)
	}
	var ce *tunnel.CloseError
	if !errors.As(extra.Err(), &ce) || ce.Code != tunnel.CodeShutdown {
		t.Fatalf("a connection past %d from one address: ended with %v, want code %d (edge busy)", cap, extra.Err(), tunnel.CodeShutdown)
	}
	// A connector with the secret still gets in once the idle ones are
	// gone (they time out; here they hang up).
	for _, c := range idle {
		c.Close(tunnel.CodeNormal, "bye")
	}
	c := fakeDial(t, srv)
	fakeRegister(t, c, tun)
}

// TestTunnelQUICLimits: the edge's QUIC transport grants a connector one
// stream (the control stream) and no datagrams, and offers no 0-RTT.
func TestTunnelQUICLimits(t *testing.T) {
	srv := startEdgeLogged(t, &syncBuffer{})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.CAPEM())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := quic.DialAddr(ctx, srv.TunnelAddr().String(),
		&tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{tunnel.ALPN}, MinVersion: tls.VersionTLS13},
		&quic.Config{EnableDatagrams: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseWithError(0, "")
	st := c.ConnectionState()
	if st.SupportsDatagrams.Remote {
		t.Error("the edge offers QUIC datagrams")
	}
	if st.Used0RTT {
		t.Error("0-RTT was used")
	}
	ctrl, err := c.OpenStream()
	if err != nil {
		t.Fatalf("the control stream: %v", err)
	}
	ctrl.Write([]byte{byte(tunnel.FrameRegister)})
	if s, err := c.OpenStream(); err == nil {
		t.Errorf("a second stream %d was granted", s.StreamID())
	}
	if err := c.SendDatagram([]byte("x")); err == nil {
		t.Error("a datagram was accepted for sending")
	}
}
