package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// pebble is a real ACME server (Let's Encrypt's Pebble) in this process,
// on loopback: its directory at DirectoryURL over HTTPS (trust
// ServerRoots), validating challenges against 127.0.0.1 at the ports
// given to start, through DNS (the edge's own DNS server, or one of the
// test's that answers 127.0.0.1 for every name). Certificates it issues
// chain to IssuedRoots.
type pebble struct {
	DirectoryURL string
	ServerRoots  *x509.CertPool
	IssuedRoots  *x509.CertPool
	// DNS is the DNS server Pebble's validator asks (host:port, UDP and
	// TCP), DNS-01's TXT records included. If empty when start runs, one
	// of the test's that answers 127.0.0.1 for every A question.
	DNS     string
	orders  atomic.Int64
	handler atomic.Pointer[http.Handler]
}

// newPebbleServer starts Pebble's HTTPS listener; start (once the edge's
// ports are known) makes it answer.
func newPebbleServer(t *testing.T) *pebble {
	t.Helper()
	p := &pebble{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" { // Pebble's newOrder
			p.orders.Add(1)
		}
		h := p.handler.Load()
		if h == nil {
			http.Error(w, "pebble not started", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.DirectoryURL = srv.URL + wfe.DirectoryPath
	p.ServerRoots = x509.NewCertPool()
	p.ServerRoots.AddCert(srv.Certificate())
	return p
}

// start builds Pebble's CA, validator and front end: it validates
// HTTP-01 at httpPort and TLS-ALPN-01 at tlsPort on 127.0.0.1, and
// issues certificates valid for validity seconds (0: Pebble's default).
func (p *pebble) start(t *testing.T, httpPort, tlsPort int, validity uint64) {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	logger := log.New(&tWriter{t: t}, "pebble ", 0)
	if !testing.Verbose() {
		logger = log.New(discard{}, "", 0)
	}
	store := db.NewMemoryStore()
	profiles := map[string]ca.Profile{"default": {Description: "test", ValidityPeriod: validity}}
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, profiles)
	if p.DNS == "" {
		p.DNS = startAnswerAllDNS(t)
	}
	validator := va.New(logger, httpPort, tlsPort, false, p.DNS, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 3, 5)
	h := front.Handler()
	p.handler.Store(&h)
	p.IssuedRoots = x509.NewCertPool()
	p.IssuedRoots.AddCert(authority.GetRootCert(0).Cert)
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// startAnswerAllDNS runs a DNS server on 127.0.0.1, UDP and TCP at one
// port (Pebble asks over TCP), that answers every A question with
// 127.0.0.1 and every other one with no records, and returns its address.
func startAnswerAllDNS(t *testing.T) string {
	t.Helper()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, question := range q.Question {
			if question.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		w.WriteMsg(m)
	})
	var (
		ln  net.Listener
		pc  net.PacketConn
		err error
	)
	for range 10 { // the UDP port of the same number may be taken
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if pc, err = net.ListenPacket("udp", ln.Addr().String()); err == nil {
			break
		}
		ln.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return ln.Addr().String()
}

// port is an address's port number.
func port(t *testing.T, a net.Addr) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(a.String())
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// tlsClient is an HTTP client that trusts roots and dials addr whatever
// the URL's host (the hostnames are made up), over HTTP/2 when offered.
func tlsClient(roots *x509.CertPool, addr string) *http.Client {
	d := &net.Dialer{}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
