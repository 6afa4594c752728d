package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/publictls"
	"github.com/adit-dev/adit/shield"
)

// The connection-level shield over HTTP/3 (issue 12): a QUIC connection
// attempt from a denied address, or past its address's cap of open
// connections, is refused before its handshake (CONNECTION_REFUSED), as a
// TCP connection is closed when accepted.
func TestShieldHTTP3ConnFilters(t *testing.T) {
	// An edge with a brought certificate (no ACME: its CA is a closed port).
	srv, err := edge.Start(context.Background(), edge.Config{
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", TunnelAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
		ACME:   publictls.Config{CA: "https://127.0.0.1:1/dir"},
		Flood:  shield.FloodConfig{MaxConnsPerAddr: 2},
		Logger: testLogger(t).With("side", "edge"),
	})
	if err != nil {
		t.Fatalf("starting edge: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	caCert, certPEM, keyPEM := wildcardCert(t, "app.test")
	if _, err := srv.Certificates().Add(context.Background(), "app.test", control.AddCertificateRequest{CertPEM: certPEM, KeyPEM: keyPEM}); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	tun := createTunnel(t, srv, "web", "app.test")
	startConnector(t, srv, tun, mustIngress(t, headerOrigin(t).URL))
	api := accessAPI(t, srv)
	raddr, err := net.ResolveUDPAddr("udp", srv.HTTPSAddr().String())
	if err != nil {
		t.Fatal(err)
	}

	// dial opens a QUIC connection from 127.0.0.n (each client its own
	// UDP socket, so each connection its own port).
	dial := func(n byte) (*quic.Conn, error) {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, n)})
		if err != nil {
			t.Fatal(err)
		}
		tr := &quic.Transport{Conn: udp}
		t.Cleanup(func() { tr.Close(); udp.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return tr.Dial(ctx, raddr, &tls.Config{RootCAs: roots, ServerName: "app.test", NextProtos: []string{http3.NextProtoH3}}, &quic.Config{})
	}
	get := func(c *quic.Conn) (int, string) {
		req, _ := http.NewRequest("GET", "https://app.test/h3", nil)
		resp, err := (&http3.Transport{}).NewClientConn(c).RoundTrip(req)
		if err != nil {
			t.Fatalf("HTTP/3 GET: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Proto
	}
	refused := func(err error) bool {
		var te *quic.TransportError
		return errors.As(err, &te) && te.ErrorCode == quic.ConnectionRefused
	}

	// Two connections from one address are served (the second after a
	// Retry: the address holds half its cap); the third is refused.
	var c1 *quic.Conn
	waitFor(t, "the brought certificate to serve", func() bool {
		c1, err = dial(31)
		return err == nil
	})
	if code, proto := get(c1); code != http.StatusOK || proto != "HTTP/3.0" {
		t.Fatalf("first connection: got %d over %s, want 200 over HTTP/3.0", code, proto)
	}
	c2, err := dial(31)
	if err != nil {
		t.Fatalf("second connection: %v", err)
	}
	if code, _ := get(c2); code != http.StatusOK {
		t.Fatalf("second connection: got %d, want 200", code)
	}
	if _, err := dial(31); !refused(err) {
		t.Fatalf("third connection from one address: got %v, want CONNECTION_REFUSED", err)
	}
	if c, err := dial(32); err != nil {
		t.Fatalf("another address: %v, want a connection", err)
	} else {
		c.CloseWithError(0, "")
	}
	// A connection that ends gives its place back.
	c1.CloseWithError(0, "")
	waitFor(t, "a connection in the place of the closed one", func() bool {
		c, err := dial(31)
		if err != nil {
			return false
		}
		c.CloseWithError(0, "")
		return true
	})
	c2.CloseWithError(0, "")

	// A '*' deny rule refuses the address's QUIC connections too.
	rule, err := api.AddIPRule(context.Background(), control.IPRule{Hostname: control.AllHosts, Action: control.IPDeny, CIDR: "127.0.0.33/32"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deny rule to refuse QUIC connections", func() bool {
		c, err := dial(33)
		if err == nil {
			c.CloseWithError(0, "")
			return false
		}
		if !refused(err) {
			t.Fatalf("denied address: got %v, want CONNECTION_REFUSED", err)
		}
		return true
	})
	if err := api.DeleteIPRule(context.Background(), rule.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the address served again", func() bool {
		c, err := dial(33)
		if err != nil {
			return false
		}
		defer c.CloseWithError(0, "")
		code, _ := get(c)
		return code == http.StatusOK
	})
}
