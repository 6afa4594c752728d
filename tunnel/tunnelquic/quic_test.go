package tunnelquic

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunneltest"
)

// transport is this package for the conformance suite, with default
// configs.
var transport = tunneltest.Transport{
	Protocol: "quic",
	Listen: func(addr string, server *tls.Config) (tunnel.Listener, error) {
		return Listen(addr, server, Config{})
	},
	Dial: func(ctx context.Context, addr string, client *tls.Config) (tunnel.Conn, error) {
		return Dial(ctx, addr, client, Config{})
	},
	IsReset:   isRemoteStreamError,
	IsStopped: isRemoteStreamError,
}

func isRemoteStreamError(err error) bool {
	var se *quic.StreamError
	return errors.As(err, &se) && se.Remote
}

// TestTransport runs the transport conformance suite.
func TestTransport(t *testing.T) {
	tunneltest.Run(t, transport)
}

// newPair listens on 127.0.0.1:0, dials it and accepts. Everything is
// closed, and waited for, at cleanup.
func newPair(t testing.TB, serverCfg, clientCfg Config) tunneltest.Pair {
	t.Helper()
	pki := tunneltest.NewTestPKI(t)
	ln, err := Listen("127.0.0.1:0", pki.Server, serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return tunneltest.Connect(t, ln, func(ctx context.Context) (tunnel.Conn, error) {
		return Dial(ctx, ln.Addr().String(), pki.Client, clientCfg)
	})
}

// TestWrongALPN: a QUIC client speaking another protocol is refused in the
// handshake with TLS's no_application_protocol alert.
func TestWrongALPN(t *testing.T) {
	tunneltest.CheckLeaks(t)
	ctx := tunneltest.Context(t)
	pki := tunneltest.NewTestPKI(t)
	ln, err := Listen("127.0.0.1:0", pki.Server, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, protos := range [][]string{{"h3"}, {"adit/2"}} {
		t.Run(fmt.Sprint(protos), func(t *testing.T) {
			conf := pki.Client.Clone()
			conf.NextProtos = protos
			qc, err := quic.DialAddr(ctx, ln.Addr().String(), conf, &quic.Config{})
			if err == nil {
				qc.CloseWithError(0, "")
				t.Fatalf("ALPN %v: got a connection, want an error", protos)
			}
			const noApplicationProtocol = 0x100 + 120 // CRYPTO_ERROR carrying the TLS alert
			var te *quic.TransportError
			if !errors.As(err, &te) || te.ErrorCode != noApplicationProtocol {
				t.Errorf("ALPN %v: got %v, want a no_application_protocol transport error", protos, err)
			}
		})
	}
}

// TestOpenStreamWaitsForLimit: with the peer's stream limit reached,
// OpenStream waits until a stream finishes (or its context ends).
func TestOpenStreamWaitsForLimit(t *testing.T) {
	tunneltest.CheckLeaks(t)
	ctx := tunneltest.Context(t)
	p := newPair(t, Config{MaxIncomingStreams: 1}, Config{})
	w, r := tunneltest.Open(t, p.Client, p.Server)

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if s, err := p.Client.OpenStream(short); !errors.Is(err, context.DeadlineExceeded) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("OpenStream over the limit: got %v, want context.DeadlineExceeded", err)
	}

	// Finish the first stream on both sides; the edge grants a new one.
	w.CloseWrite()
	if b, err := io.ReadAll(r); err != nil || len(b) != 0 {
		t.Fatalf("edge: got %q, %v; want EOF", b, err)
	}
	r.CloseWrite()
	r.Close()
	if b, err := io.ReadAll(w); err != nil || len(b) != 0 {
		t.Fatalf("connector: got %q, %v; want EOF", b, err)
	}
	w.Close()

	w2, r2 := tunneltest.Open(t, p.Client, p.Server)
	w2.Close()
	r2.Close()
}

func TestConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want quic.Config
	}{
		{"zero", Config{}, quic.Config{
			KeepAlivePeriod: 2 * time.Second, MaxIdleTimeout: 10 * time.Second, HandshakeIdleTimeout: 5 * time.Second,
			MaxIncomingStreams: 10000, MaxIncomingUniStreams: -1,
			MaxStreamReceiveWindow: 6 << 20, MaxConnectionReceiveWindow: 30 << 20,
		}},
		{"set", Config{
			KeepAlivePeriod: time.Second, MaxIdleTimeout: time.Minute, HandshakeTimeout: 3 * time.Second,
			MaxIncomingStreams: 5, MaxStreamReceiveWindow: 1 << 20, MaxConnectionReceiveWindow: 2 << 20,
		}, quic.Config{
			KeepAlivePeriod: time.Second, MaxIdleTimeout: time.Minute, HandshakeIdleTimeout: 3 * time.Second,
			MaxIncomingStreams: 5, MaxIncomingUniStreams: -1,
			MaxStreamReceiveWindow: 1 << 20, MaxConnectionReceiveWindow: 2 << 20,
		}},
		{"no keepalives", Config{KeepAlivePeriod: -1}, quic.Config{
			KeepAlivePeriod: 0, MaxIdleTimeout: 10 * time.Second, HandshakeIdleTimeout: 5 * time.Second,
			MaxIncomingStreams: 10000, MaxIncomingUniStreams: -1,
			MaxStreamReceiveWindow: 6 << 20, MaxConnectionReceiveWindow: 30 << 20,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.cfg.quicConfig()
			if got.KeepAlivePeriod != tc.want.KeepAlivePeriod || got.MaxIdleTimeout != tc.want.MaxIdleTimeout ||
				got.HandshakeIdleTimeout != tc.want.HandshakeIdleTimeout || got.MaxIncomingStreams != tc.want.MaxIncomingStreams ||
				got.MaxIncomingUniStreams != tc.want.MaxIncomingUniStreams ||
				got.MaxStreamReceiveWindow != tc.want.MaxStreamReceiveWindow ||
				got.MaxConnectionReceiveWindow != tc.want.MaxConnectionReceiveWindow {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestBufferWarning(t *testing.T) {
	const want = 7 << 20
	for _, tc := range []struct {
		name     string
		rcv, snd int
		warn     bool
	}{
		{"both granted", want, want, false},
		{"more than asked", 2 * want, want, false},
		{"receive capped", 208 << 10, want, true},
		{"send capped", want, 208 << 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := bufferWarning(tc.rcv, tc.snd, want)
			if got := msg != ""; got != tc.warn {
				t.Fatalf("warning: got %q, want one: %v", msg, tc.warn)
			}
			if tc.warn && !strings.Contains(msg, "sysctl -w net.core.rmem_max=7340032 net.core.wmem_max=7340032") {
				t.Errorf("warning %q does not give the fix", msg)
			}
		})
	}
}

// TestUDPBuffersGrown: the sockets Dial and Listen open have the buffers
// asked for, or a warning was logged saying why not.
func TestUDPBuffersGrown(t *testing.T) {
	var logged bytes.Buffer
	pc, err := listenUDP(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	rcv, snd, err := growBuffers(pc)
	if err != nil {
		t.Fatal(err)
	}
	if (rcv < udpBufferSize || snd < udpBufferSize) && !strings.Contains(logged.String(), "sysctl") {
		t.Errorf("buffers %d/%d KiB below %d KiB and no warning logged (log: %q)", rcv>>10, snd>>10, udpBufferSize>>10, logged.String())
	}
	t.Logf("granted receive %d KiB, send %d KiB", rcv>>10, snd>>10)
}
