package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"google.golang.org/grpc/credentials"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/internal/pki"
	"github.com/adit-dev/adit/internal/store"
	"github.com/adit-dev/adit/publictls"
)

// The edge's public HTTPS listener against a real ACME server (Pebble):
// certificates by HTTP-01 and TLS-ALPN-01, HTTP/2, HTTP/3, the redirect,
// renewal, one order for two edges, brought wildcard certificates, and the
// visitor's address (PROXY protocol, forwarding headers).

// headerOrigin answers every request with its protocol and header as JSON.
func headerOrigin(t *testing.T) *httptest.Server {
	t.Helper()
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"proto": r.Proto, "header": r.Header})
	}))
	t.Cleanup(o.Close)
	return o
}

type echoed struct {
	Proto  string      `json:"proto"`
	Header http.Header `json:"header"`
}

// startHTTPSEdge starts an edge with an HTTPS listener ordering from pb,
// then starts pb validating against the edge's ports.
func startHTTPSEdge(t *testing.T, pb *pebble, validity uint64, mod func(*edge.Config)) *edge.Server {
	t.Helper()
	cfg := edge.Config{
		DataDir:    t.TempDir(),
		HTTPAddr:   "127.0.0.1:0",
		HTTPSAddr:  "127.0.0.1:0",
		TunnelAddr: "127.0.0.1:0",
		APIAddr:    "127.0.0.1:0",
		ACME: publictls.Config{
			CA:                 pb.DirectoryURL,
			CARoots:            pb.ServerRoots,
			RenewCheckInterval: time.Second,
		},
		Logger: testLogger(t).With("side", "edge"),
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := edge.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("starting edge: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	if pb.handler.Load() == nil {
		if a := srv.DNSAddr(); a != nil && pb.DNS == "" {
			pb.DNS = a.String() // the edge answers its zones, DNS-01 included
		}
		pb.start(t, port(t, srv.HTTPAddr()), port(t, srv.HTTPSAddr()), validity)
	}
	return srv
}

// waitHTTPS GETs url through client until it answers (the certificate is
// ordered in the background), for up to two minutes.
func waitHTTPS(t *testing.T, client *http.Client, url string) *http.Response {
	t.Helper()
	var resp *http.Response
	var lastErr error
	if !waitWithin(2*time.Minute, func() bool {
		resp, lastErr = client.Get(url)
		return lastErr == nil
	}) {
		t.Fatalf("GET %s: no answer over HTTPS in 2 minutes; last error: %v", url, lastErr)
	}
	return resp
}

// waitCertificate waits until the edge lists an ACME certificate for host,
// for up to two minutes.
func waitCertificate(t *testing.T, srv *edge.Server, host string) {
	t.Helper()
	var certs []control.Certificate
	if !waitWithin(2*time.Minute, func() bool {
		var err error
		if certs, err = srv.Certificates().List(context.Background()); err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(certs, func(c control.Certificate) bool { return c.Hostname == host && !c.NotAfter.IsZero() })
	}) {
		t.Fatalf("no certificate for %s ordered within 2 minutes of its route; certificates: %+v", host, certs)
	}
}

func TestHTTPSCertificateFromACME(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*edge.Config)
	}{
		{"http-01", func(c *edge.Config) { c.ACME.DisableTLSALPN01 = true }},
		{"tls-alpn-01", func(c *edge.Config) { c.ACME.DisableHTTP01 = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pb := newPebbleServer(t)
			srv := startHTTPSEdge(t, pb, 0, tc.mod)
			origin := headerOrigin(t)
			tun := createTunnel(t, srv, "web", "app.test")
			startConnector(t, srv, tun, mustIngress(t, origin.URL))

			// The route alone starts the order: no handshake asks for it.
			waitCertificate(t, srv, "app.test")
			client := tlsClient(pb.IssuedRoots, srv.HTTPSAddr().String())
			resp := waitHTTPS(t, client, "https://app.test/x")
			var got echoed
			json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
				t.Errorf("answer = %d over %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
			}
			if got.Header.Get("X-Forwarded-Proto") != "https" {
				t.Errorf("origin saw X-Forwarded-Proto %q, want https", got.Header.Get("X-Forwarded-Proto"))
			}
			if alt := resp.Header.Get("Alt-Svc"); !strings.Contains(alt, `h3=":`+itoa(port(t, srv.HTTPSAddr()))+`"`) {
				t.Errorf("Alt-Svc = %q, want HTTP/3 announced on the HTTPS port", alt)
			}
			orders := pb.orders.Load()
			if orders != 1 {
				t.Errorf("Pebble saw %d orders, want 1", orders)
			}

			// A name with no route: no handshake, no order, no other
			// name revealed.
			_, err := tlsClient(pb.IssuedRoots, srv.HTTPSAddr().String()).Get("https://unrouted.test/")
			if err == nil {
				t.Error("a handshake for an unrouted name succeeded")
			}
			raw, err := tls.Dial("tcp", srv.HTTPSAddr().String(), &tls.Config{ServerName: "unrouted.test", InsecureSkipVerify: true})
			if err == nil {
				t.Errorf("unrouted SNI got a certificate for %v", raw.ConnectionState().PeerCertificates[0].DNSNames)
				raw.Close()
			}
			if n := pb.orders.Load(); n != orders {
				t.Errorf("an unrouted SNI made %d orders", n-orders)
			}

			// HTTP/3.
			h3 := &http3.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pb.IssuedRoots},
				Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, qc *quic.Config) (*quic.Conn, error) {
					return quic.DialAddr(ctx, srv.HTTPSAddr().String(), tlsCfg, qc)
				},
			}
			defer h3.Close()
			resp, err = (&http.Client{Transport: h3}).Get("https://app.test/h3")
			if err != nil {
				t.Fatalf("HTTP/3: %v", err)
			}
			json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/3.0" {
				t.Errorf("HTTP/3 answer = %d over %s, want 200 over HTTP/3.0", resp.StatusCode, resp.Proto)
			}

			// Plain HTTP for a hostname with a certificate: 308 to https.
			plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			req, _ := http.NewRequest("GET", "http://"+srv.HTTPAddr().String()+"/path?q=1", nil)
			req.Host = "app.test"
			resp, err = plain.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := "https://app.test:" + itoa(port(t, srv.HTTPSAddr())) + "/path?q=1"
			if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
				t.Errorf("plain HTTP = %d Location %q, want 308 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
			}

			// The operator's view.
			certs, err := srv.Certificates().List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(certs) != 1 || certs[0].Hostname != "app.test" || certs[0].Source != control.CertSourceACME ||
				certs[0].NotAfter.IsZero() || certs[0].LastError != "" {
				t.Errorf("cert list = %+v, want app.test from ACME with no error", certs)
			}
		})
	}
}

// TestHTTPSTwoEdgesOneOrder: two edges on one etcd order a routed name
// once and serve the same certificate.
func TestHTTPSTwoEdgesOneOrder(t *testing.T) {
	st, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	shared := func(c *edge.Config) { c.EtcdEndpoints = st.Endpoints() }
	pb := newPebbleServer(t)
	a := startHTTPSEdge(t, pb, 0, shared)
	b := startHTTPSEdge(t, pb, 0, shared) // Pebble validates at a's ports; b's challenges are in etcd
	origin := headerOrigin(t)
	tun := createTunnel(t, a, "web", "app.test")
	b.Sync(context.Background())
	startConnector(t, a, tun, mustIngress(t, origin.URL))

	serial := func(srv *edge.Server) string {
		resp := waitHTTPS(t, tlsClient(pb.IssuedRoots, srv.HTTPSAddr().String()), "https://app.test/")
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	sa, sb := serial(a), serial(b)
	if sa != sb {
		t.Errorf("edges serve different certificates: %s and %s", sa, sb)
	}
	if n := pb.orders.Load(); n != 1 {
		t.Errorf("Pebble saw %d orders from two edges, want 1", n)
	}
}

// TestHTTPSRenewal: a short-lived certificate is renewed before it
// expires, and the new one serves.
func TestHTTPSRenewal(t *testing.T) {
	pb := newPebbleServer(t)
	srv := startHTTPSEdge(t, pb, 30, nil) // 30-second certificates
	origin := headerOrigin(t)
	tun := createTunnel(t, srv, "web", "app.test")
	startConnector(t, srv, tun, mustIngress(t, origin.URL))
	waitCertificate(t, srv, "app.test")
	client := tlsClient(pb.IssuedRoots, srv.HTTPSAddr().String())
	resp := waitHTTPS(t, client, "https://app.test/")
	resp.Body.Close()
	first := resp.TLS.PeerCertificates[0]

	var renewed *x509.Certificate
	if !waitWithin(2*time.Minute, func() bool {
		client.CloseIdleConnections()
		resp, err := client.Get("https://app.test/")
		if err != nil {
			t.Fatalf("GET during renewal: %v", err)
		}
		resp.Body.Close()
		renewed = resp.TLS.PeerCertificates[0]
		return renewed.SerialNumber.Cmp(first.SerialNumber) != 0
	}) {
		t.Fatalf("the certificate ending %v was not renewed", first.NotAfter)
	}
	if !renewed.NotAfter.After(first.NotAfter) {
		t.Errorf("renewed certificate ends %v, not after the first's %v", renewed.NotAfter, first.NotAfter)
	}
	if time.Now().After(first.NotAfter) {
		t.Errorf("renewed only after the first certificate expired")
	}
}

// TestHTTPSBroughtWildcard: a wildcard certificate an operator brings
// serves every name of a wildcard route, and no order is made.
func TestHTTPSBroughtWildcard(t *testing.T) {
	pb := newPebbleServer(t)
	srv := startHTTPSEdge(t, pb, 0, nil)
	caCert, certPEM, keyPEM := wildcardCert(t, "*.wild.test")
	if _, err := srv.Certificates().Add(context.Background(), "app.other.test", control.AddCertificateRequest{CertPEM: certPEM, KeyPEM: keyPEM}); err == nil {
		t.Error("a certificate that does not name the hostname was accepted")
	}
	if _, err := srv.Certificates().Add(context.Background(), "*.wild.test", control.AddCertificateRequest{CertPEM: certPEM, KeyPEM: keyPEM}); err != nil {
		t.Fatal(err)
	}
	origin := headerOrigin(t)
	tun := createTunnel(t, srv, "web", "*.wild.test")
	startConnector(t, srv, tun, mustIngress(t, origin.URL))
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	for _, host := range []string{"a.wild.test", "b.wild.test"} {
		resp := waitHTTPS(t, tlsClient(roots, srv.HTTPSAddr().String()), "https://"+host+"/")
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d, want 200", host, resp.StatusCode)
		}
	}
	if n := pb.orders.Load(); n != 0 {
		t.Errorf("a wildcard route made %d orders", n)
	}
	certs, err := srv.Certificates().List(context.Background())
	if err != nil || len(certs) != 1 || certs[0].Source != control.CertSourceManual || certs[0].Hostname != "*.wild.test" {
		t.Errorf("cert list = %+v, %v; want the brought *.wild.test", certs, err)
	}
}

// wildcardCert makes a CA and a certificate for name signed by it.
func wildcardCert(t *testing.T, name string) (*x509.Certificate, string, string) {
	t.Helper()
	caPEM, caKeyPEM, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := pki.IssueServerCert(caPEM, caKeyPEM, []string{name}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(caPEM)
	caCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return caCert, string(certPEM), string(keyPEM)
}

// TestVisitorAddress: the origin learns the visitor's address from the
// edge, never from the client; behind a load balancer from its PROXY
// protocol header.
func TestVisitorAddress(t *testing.T) {
	origin := headerOrigin(t)
	ask := func(t *testing.T, addr, prefix string) (echoed, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(c, prefix+"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n"+
			"X-Forwarded-For: 6.6.6.6\r\nX-Real-Ip: 6.6.6.6\r\nCf-Connecting-Ip: 6.6.6.6\r\n\r\n")
		resp, err := http.ReadResponse(bufioReader(c), nil)
		if err != nil {
			return echoed{}, err
		}
		defer resp.Body.Close()
		var got echoed
		if resp.StatusCode != http.StatusOK {
			return got, errors.New("status " + resp.Status)
		}
		err = json.NewDecoder(resp.Body).Decode(&got)
		return got, err
	}
	check := func(t *testing.T, got echoed, want string) {
		t.Helper()
		for _, h := range []string{"X-Forwarded-For", "X-Real-Ip", "Cf-Connecting-Ip"} {
			if v := got.Header.Values(h); len(v) != 1 || v[0] != want {
				t.Errorf("origin saw %s %q, want %q", h, v, want)
			}
		}
	}
	t.Run("direct", func(t *testing.T) {
		srv := startEdge(t, "")
		tun := createTunnel(t, srv, "web", "app.test")
		startConnector(t, srv, tun, mustIngress(t, origin.URL))
		got, err := ask(t, srv.HTTPAddr().String(), "")
		if err != nil {
			t.Fatal(err)
		}
		check(t, got, "127.0.0.1")
	})
	t.Run("proxy-protocol", func(t *testing.T) {
		srv, err := edge.Start(context.Background(), edge.Config{
			DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", TunnelAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
			ProxyProtocol: true, Logger: testLogger(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		tun := createTunnel(t, srv, "web", "app.test")
		startConnector(t, srv, tun, mustIngress(t, origin.URL))
		got, err := ask(t, srv.HTTPAddr().String(), "PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\n")
		if err != nil {
			t.Fatal(err)
		}
		check(t, got, "203.0.113.9")
		if _, err := ask(t, srv.HTTPAddr().String(), ""); err == nil {
			t.Error("a connection without a PROXY header was served")
		}
	})
}

func itoa(n int) string { return strconv.Itoa(n) }

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

// startTLSEdge starts an edge with an HTTPS listener serving a certificate
// brought for host (no ACME order: its CA is a closed loopback port), and
// returns gRPC credentials that trust it.
func startTLSEdge(t *testing.T, host string) (*edge.Server, credentials.TransportCredentials) {
	t.Helper()
	srv, err := edge.Start(context.Background(), edge.Config{
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", TunnelAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
		ACME:   publictls.Config{CA: "https://127.0.0.1:1/dir"},
		Logger: testLogger(t).With("side", "edge"),
	})
	if err != nil {
		t.Fatalf("starting edge: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	caCert, certPEM, keyPEM := wildcardCert(t, host)
	if _, err := srv.Certificates().Add(context.Background(), host, control.AddCertificateRequest{CertPEM: certPEM, KeyPEM: keyPEM}); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	// The brought certificate serves once the edge's watch has it.
	if !waitWithin(30*time.Second, func() bool {
		var c *tls.Conn
		if c, err = tls.Dial("tcp", srv.HTTPSAddr().String(), &tls.Config{RootCAs: roots, ServerName: host}); err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("the brought certificate for %s does not serve: %v", host, err)
	}
	return srv, credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: host})
}
