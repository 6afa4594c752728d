package edge

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"

	"github.com/adit-dev/adit/carrier"
	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/tunnel"
)

// tcpPorts keeps one listener open for each public TCP port route (see
// control.TCPRoute) whose tunnel is live, on the host of the public HTTP
// address, and carries each connection to the route's tunnel as a TCP
// stream. It follows the routes through controlserver.State events.
type tcpPorts struct {
	ctx   context.Context
	host  string // listen host; "" for every interface
	state *controlserver.State
	t     *tunnelTransport // opens the streams (forwarding through a peer edge too)
	log   *slog.Logger
	noisy *slog.Logger // rate-limited, for what any client can trigger

	mu        sync.Mutex
	closed    bool
	draining  bool // no listener opens any more; connections in flight go on
	listeners map[int]net.Listener
	failed    map[int]string // port → why it could not be opened, logged once
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup
}

// startTCPPorts opens the listeners of the current routes and follows the
// routes from then on. httpAddr is the public HTTP address as configured;
// noisy logs per-connection refusals (nil: log).
func startTCPPorts(ctx context.Context, httpAddr string, state *controlserver.State, tr *tunnelTransport, log, noisy *slog.Logger) *tcpPorts {
	host, _, err := net.SplitHostPort(httpAddr)
	if err != nil {
		host = ""
	}
	t := &tcpPorts{
		ctx:       ctx,
		host:      host,
		state:     state,
		t:         tr,
		log:       log,
		noisy:     noisy,
		listeners: make(map[int]net.Listener),
		failed:    make(map[int]string),
		conns:     make(map[net.Conn]struct{}),
	}
	if t.noisy == nil {
		t.noisy = log
	}
	state.OnEvent(t.onEvent)
	t.reconcile()
	return t
}

func (t *tcpPorts) onEvent(ev controlserver.Event) {
	switch ev.Kind {
	case controlserver.TCPRoutesChanged, controlserver.TunnelDeleted:
		t.reconcile()
	}
}

// reconcile opens the listeners of routes that have none and closes those
// whose route is gone (connections in flight continue).
func (t *tcpPorts) reconcile() {
	// Read the state under t.mu, so that of two reconciles the later one
	// applies the later state.
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.draining {
		return
	}
	want := make(map[int]control.TCPRoute)
	for _, r := range t.state.TCPRoutes() {
		if tun, ok := t.state.Tunnel(r.TunnelID); ok && tun.DeletedAt == nil {
			want[r.Port] = r
		}
	}
	for port, ln := range t.listeners {
		if _, ok := want[port]; !ok {
			ln.Close()
			delete(t.listeners, port)
			t.log.Info("tcp route removed; port closed", "port", port)
		}
	}
	for port := range t.failed {
		if _, ok := want[port]; !ok {
			delete(t.failed, port)
		}
	}
	for port, r := range want {
		if _, ok := t.listeners[port]; ok {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(t.host, strconv.Itoa(port)))
		if err != nil {
			if t.failed[port] != err.Error() {
				t.log.Error("cannot listen on a routed tcp port", "port", port, "tunnel", r.TunnelID, "err", err)
				t.failed[port] = err.Error()
			}
			continue
		}
		delete(t.failed, port)
		t.listeners[port] = ln
		t.log.Info("tcp port open", "addr", ln.Addr().String(), "tunnel", r.TunnelID, "hostname", r.Hostname)
		t.wg.Add(1)
		go t.accept(port, ln)
	}
}

func (t *tcpPorts) accept(port int, ln net.Listener) {
	defer t.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			c.Close()
			return
		}
		t.conns[c] = struct{}{}
		t.wg.Add(1)
		t.mu.Unlock()
		go func() {
			defer t.wg.Done()
			t.serve(port, c)
			t.mu.Lock()
			delete(t.conns, c)
			t.mu.Unlock()
		}()
	}
}

// serve carries one connection to the tunnel of its port's route.
func (t *tcpPorts) serve(port int, c net.Conn) {
	id := newRequestID()
	log := t.noisy.With("port", port, "client", c.RemoteAddr().String(), "request_id", id)
	r, ok := t.state.TCPRoute(port)
	if !ok {
		carrier.Abort(c)
		return
	}
	log = log.With("tunnel", r.TunnelID, "hostname", r.Hostname)
	ts, err := openTCPStream(t.ctx, t.t, r.TunnelID, &tunnel.RequestHeader{
		Type:       tunnel.StreamTCP,
		Host:       r.Hostname,
		ClientAddr: c.RemoteAddr().String(),
		RequestID:  id,
	})
	if err != nil {
		logTCPRefusal(log, err)
		carrier.Abort(c)
		return
	}
	defer ts.release()
	log.Debug("tcp connection open")
	if err := carrier.Pipe(c, ts); err != nil {
		log.Debug("tcp connection broke off", "err", err)
		return
	}
	log.Debug("tcp connection closed")
}

// drain stops taking visitors (drain.go): the listeners close and no
// route opens one again, while the connections in flight go on. It
// returns once they have ended, or ctx has (close aborts what is left).
func (t *tcpPorts) drain(ctx context.Context) {
	t.mu.Lock()
	t.draining = true
	for port, ln := range t.listeners {
		ln.Close()
		delete(t.listeners, port)
	}
	n := len(t.conns)
	t.mu.Unlock()
	if n > 0 {
		t.log.Info("draining: tcp ports closed; finishing their connections", "connections", n)
	}
	done := make(chan struct{})
	go func() {
		t.wg.Wait() // the accept loops end with their listeners
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// close closes the listeners, aborts the connections and waits for them.
func (t *tcpPorts) close() {
	t.mu.Lock()
	t.closed = true
	for port, ln := range t.listeners {
		ln.Close()
		delete(t.listeners, port)
	}
	for c := range t.conns {
		carrier.Abort(c)
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// ports returns the ports listened on now, in order.
func (t *tcpPorts) ports() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	ports := make([]int, 0, len(t.listeners))
	for p := range t.listeners {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	return ports
}

// TCPPorts returns the public TCP ports this edge listens on now, for its
// TCP routes (see control.TCPRoute).
func (s *Server) TCPPorts() []int {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.ports()
}
