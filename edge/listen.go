package edge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunnelquic"
	"github.com/adit-dev/adit/tunnel/tunnelws"
)

// ListenError is a listener Start could not open (a port in use, an
// address not on this machine). Listener names it as the edge's Config
// does: "http" (HTTPAddr), "https" (HTTPSAddr), "api" (APIAddr), "tunnel" (TunnelAddr),
// "metrics" (MetricsAddr) or "peer" (PeerAddr), so a command line can name its flag.
type ListenError struct {
	Listener string
	Addr     string
	Err      error
}

func (e *ListenError) Error() string { return e.Err.Error() }
func (e *ListenError) Unwrap() error { return e.Err }

// listenError wraps a listener's failure, nil for nil.
func listenError(listener, addr string, err error) error {
	if err == nil {
		return nil
	}
	return &ListenError{Listener: listener, Addr: addr, Err: err}
}

// listenTunnel opens the two tunnel listeners on one port number: QUIC on
// UDP and WebSocket+yamux on TCP, so a connector needs one address whatever
// transport gets through its network. With port 0, the OS picks the UDP
// port and the TCP listener takes the same number (a few tries if that TCP
// port happens to be taken). gate bounds both listeners' handshakes
// together (handshake.go).
func listenTunnel(addr string, tlsConf *tls.Config, qc tunnelquic.Config, wc tunnelws.Config, gate *handshakeGate, log *slog.Logger) (quicLn, wsLn tunnel.Listener, err error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("edge: tunnel address %q: %w", addr, err)
	}
	wc = edgeWS(wc) // limits.go
	if wc.Logger == nil {
		wc.Logger = log
	}
	if qc.Logger == nil {
		qc.Logger = log
	}
	if gate != nil {
		qc.Admit, qc.Crowded = gate.quicAdmit, gate.crowded
		wc.Admit = gate.wsAdmit
	}
	tries := 1
	if port == "0" {
		tries = 10
	}
	for range tries {
		quicLn, err = tunnelquic.Listen(addr, tlsConf, qc)
		if err != nil {
			return nil, nil, fmt.Errorf("edge: tunnel listener (udp): %w", err)
		}
		_, bound, _ := net.SplitHostPort(quicLn.Addr().String())
		wsLn, err = tunnelws.Listen(net.JoinHostPort(host, bound), tlsConf, wc)
		if err == nil {
			return quicLn, wsLn, nil
		}
		quicLn.Close()
		var opErr *net.OpError
		if port != "0" || !errors.As(err, &opErr) {
			break
		}
	}
	if n, _ := strconv.Atoi(port); n != 0 {
		return nil, nil, fmt.Errorf("edge: tunnel listener (tcp %s, for the websocket transport): %w", port, err)
	}
	return nil, nil, fmt.Errorf("edge: tunnel listener (tcp, for the websocket transport): %w", err)
}

// TunnelTCPAddr is the bound TCP address of the WebSocket tunnel listener.
func (s *Server) TunnelTCPAddr() net.Addr { return s.wsLn.Addr() }
