package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/quic-go/quic-go"

	"github.com/adit-dev/adit/connector"
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
// register are bounded by Config.MaxRegisteringPerAddr. Half of the
// places hold connections that are registering (until registerTimeout,
// 10s, if they never finish the register frame); the next connections
// are told to come back later (retry_after_ms) and closed, and those that
// find every place taken are closed at once: none with code 4, which says
// the edge drains.
func TestRegisteringPerAddress(t *testing.T) {
	const max = 8 // 4 registering, 4 answering
	srv := startEdgeLogged(t, &syncBuffer{}, func(c *edge.Config) { c.MaxRegisteringPerAddr = max })
	tun := createTunnel(t, srv, "crowded", "crowded.test")
	held, first := fillRegistering(t, srv)
	if first.answer == nil || first.answer.RetryAfterMS == 0 || first.answer.Permanent {
		t.Fatalf("after %d registering connections from one address: got %+v (closed %v), want an answer with retry_after_ms", len(held), first.answer, first.closed)
	}
	if len(held) < max/2 || len(held) > max {
		t.Errorf("%d connections from one address held a place to register, want %d", len(held), max/2)
	}
	t.Logf("%d registering; then %q, retry in %d ms", len(held), first.answer.Error, first.answer.RetryAfterMS)
	// A crowd that reads its answer and stays: each is closed within
	// busyAnswerWait (2s), and holds no place to register.
	var wg sync.WaitGroup
	outcomes := make([]registeringOutcome, 2*max)
	for i := range outcomes {
		wg.Go(func() { outcomes[i] = startRegistering(t, srv, 10*time.Second) })
	}
	wg.Wait()
	answered := 0
	for i, o := range outcomes {
		if o.answer != nil {
			answered++
			select {
			case <-o.c.Done():
			case <-time.After(6 * time.Second):
				t.Errorf("extra connection %d: answered, not closed", i)
				continue
			}
		} else if !o.closed {
			t.Errorf("extra connection %d: neither answered nor closed: it holds a place to register", i)
			continue
		}
		// (A WebSocket connection may see its transport cut before the
		// close frame: then there is no code.)
		var ce *tunnel.CloseError
		if errors.As(o.c.Err(), &ce) && ce.Code != tunnel.CodeNormal {
			t.Errorf("extra connection %d from one address: ended with %v, want code %d (edge busy)", i, o.c.Err(), tunnel.CodeNormal)
		}
	}
	t.Logf("of %d more: %d answered, %d closed at once", len(outcomes), answered, len(outcomes)-answered)
	// A connector with the secret still gets in once the held ones are
	// gone (they time out; here they hang up).
	for _, c := range append(held, first.c) {
		c.Close(tunnel.CodeNormal, "bye")
	}
	c := fakeDial(t, srv)
	fakeRegister(t, c, tun)
}

// registeringOutcome is what the edge did with a connection that started
// a register frame: answered it (busy), closed it, or neither (it holds
// a place to register).
type registeringOutcome struct {
	c      tunnel.Conn
	answer *tunnel.RegisterResponse
	closed bool
}

// startRegistering dials the edge, opens the control stream, starts a
// register frame and sends nothing more; it reports what the edge did
// within d.
func startRegistering(t testing.TB, srv *edge.Server, d time.Duration) registeringOutcome {
	c := fakeDialProto(t, srv, "websocket")
	s, err := openStreamWithin(c, floodOpenWait)
	if err != nil {
		return registeringOutcome{c: c, closed: true}
	}
	s.Write([]byte{byte(tunnel.FrameRegister)}) // and nothing more
	answered := make(chan *tunnel.RegisterResponse, 1)
	go func() {
		var resp tunnel.RegisterResponse
		if tunnel.ReadMessage(bufio.NewReader(s), &resp) == nil {
			answered <- &resp
		}
	}()
	select {
	case resp := <-answered:
		return registeringOutcome{c: c, answer: resp}
	case <-c.Done():
		return registeringOutcome{c: c, closed: true}
	case <-time.After(d):
		return registeringOutcome{c: c}
	}
}

// fillRegistering takes every place to register the edge has for this
// address with connections that never finish registering, and returns
// them and the first connection that found no place. The edge counts a
// connection once it has accepted it, which may come after the dial
// returned: they are opened one at a time, each given a moment to be
// answered, until one is.
func fillRegistering(t testing.TB, srv *edge.Server) (held []tunnel.Conn, first registeringOutcome) {
	deadline := time.Now().Add(8 * time.Second) // the held ones keep their places for registerTimeout, 10s
	for {
		first = startRegistering(t, srv, time.Second)
		if first.answer != nil || first.closed || time.Now().After(deadline) {
			return held, first
		}
		held = append(held, first.c)
	}
}

// TestRegisteringCrowd: a crowd of connectors behind one address (here
// 127.0.0.1), all starting at once while the edge has no place for them
// to register (slow neighbours hold those), all get in once there is:
// meanwhile they are told to come back later, and none takes that for an
// edge that drains (code 4).
func TestRegisteringCrowd(t *testing.T) {
	const connectors, ha = 30, 2
	edgeLogs, connLogs := &syncBuffer{}, &syncBuffer{}
	srv := startEdgeLogged(t, edgeLogs, func(c *edge.Config) { c.MaxRegisteringPerAddr = 4 })
	ing := mustIngress(t, helloOrigin(t, "hello").URL)
	held, first := fillRegistering(t, srv)
	held = append(held, first.c)
	for i := range connectors {
		tun := createTunnel(t, srv, fmt.Sprintf("crowd-%d", i))
		goConnector(t, connector.Config{
			TunnelID: tun.ID, Secret: tun.Secret, EdgeAddrs: []string{srv.TunnelAddr().String()},
			EdgeCA: srv.CAPEM(), ServerName: "localhost", Ingress: ing, HAConnections: ha,
			Logger: slog.New(slog.NewTextHandler(connLogs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		})
	}
	busy := func() float64 { return gathered(t, srv.Metrics(), "adit_edge_registrations_total", "result", "busy") }
	if !waitWithin(time.Minute, func() bool { return busy() >= connectors }) {
		t.Fatalf("%v registrations told to come back later, want %d or more", busy(), connectors)
	}
	if n := srv.Connections(); n > 0 {
		t.Fatalf("%d connections registered while every place to register was held", n)
	}
	for _, c := range held {
		c.Close(tunnel.CodeNormal, "bye")
	}
	limit := 2 * time.Minute // generous: a loaded 2-core machine
	if !waitWithin(limit, func() bool { return srv.Connections() == connectors*ha }) {
		t.Fatalf("the edge holds %d connections after %v, want %d; the connectors' log lines:\n%s",
			srv.Connections(), limit, connectors*ha, msgCounts(connLogs.String()))
	}
	t.Logf("%d connections from one address registered; %v times told to come back later", connectors*ha, busy())
	if n := strings.Count(connLogs.String(), "(code 4)"); n > 0 {
		t.Errorf("%d connector log lines report code 4 (draining):\n%s", n, msgCounts(connLogs.String()))
	}
	if !strings.Contains(connLogs.String(), "edge busy; registering again later") {
		t.Errorf("no connector was told to register again later:\n%s", msgCounts(connLogs.String()))
	}
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
