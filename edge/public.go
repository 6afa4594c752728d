package edge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/publictls"
)

// The public listeners: plain HTTP (Config.HTTPAddr), and with
// Config.HTTPSAddr, HTTPS over TCP (HTTP/1.1 and HTTP/2) and HTTP/3 over
// QUIC on the same port number, with certificates from package publictls.
// All of them serve the same handler: the router, the layers, the proxy.

// listenPublic opens the public listeners (the listen step): the plain
// HTTP one, and the HTTPS ones with their certificate manager.
func (s *Server) listenPublic() error {
	cfg := s.cfg
	ln, err := net.Listen("tcp", orDefault(cfg.HTTPAddr, ":8080"))
	if err != nil {
		return listenError("http", orDefault(cfg.HTTPAddr, ":8080"), fmt.Errorf("edge: http listener: %w", err))
	}
	s.httpLn = s.wrapPublic(ln)
	if cfg.HTTPSAddr == "" {
		return nil
	}
	ln, s.h3Conn, err = listenHTTPS(cfg.HTTPSAddr, !cfg.DisableHTTP3)
	if err != nil {
		return listenError("https", cfg.HTTPSAddr, err)
	}
	s.httpsLn = s.wrapPublic(ln)
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	acme := cfg.ACME
	if acme.Logger == nil {
		acme.Logger = s.log
	}
	_, httpPort, _ := net.SplitHostPort(s.httpLn.Addr().String())
	acme.HTTPPort, _ = strconv.Atoi(httpPort)
	acme.TLSPort, _ = strconv.Atoi(port)
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		acme.ListenHost = host
	}
	if acme.DNS01 == nil {
		acme.DNS01 = s.dns01() // dns.go: wildcard routes' certificates by DNS-01
	}
	s.certs, err = publictls.New(s.ctx, s.store.Client(), s.state, acme)
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	s.endpoints = append(s.endpoints, s.certs.Endpoints()...)
	if s.h3Conn != nil {
		s.h3Tr = s.quicTransport(s.h3Conn) // layers.go: the ConnFilters
		s.h3TLS = http3.ConfigureTLSConfig(s.certs.TLSConfig())
		s.h3Ln, err = s.h3Tr.ListenEarly(s.h3TLS, s.h3QUICConfig())
		if err != nil {
			return fmt.Errorf("edge: http/3 listener: %w", err)
		}
	}
	// A route added anywhere starts its certificate's order at once; a
	// removed one stops its renewals.
	s.state.OnEvent(func(ev controlserver.Event) {
		switch ev.Kind {
		case controlserver.RouteAdded:
			s.certs.Manage(ev.Host)
		case controlserver.RouteRemoved:
			s.certs.Unmanage(ev.Host)
		}
	})
	return nil
}

// listenHTTPS opens the HTTPS listener on addr and, with h3, the HTTP/3
// socket on the same UDP port number. An ephemeral port (":0") is a TCP
// port whose UDP twin may be taken by another program: then it tries
// another, a few times.
func listenHTTPS(addr string, h3 bool) (net.Listener, net.PacketConn, error) {
	_, want, _ := net.SplitHostPort(addr)
	tries := 1
	if want == "0" {
		tries = 10
	}
	for i := 1; ; i++ {
		ln, err := net.Listen("tcp", addr)
		if err != nil || !h3 {
			if err != nil {
				err = fmt.Errorf("edge: https listener: %w", err)
			}
			return ln, nil, err
		}
		host, port, _ := net.SplitHostPort(ln.Addr().String())
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, port))
		if err == nil {
			return ln, pc, nil
		}
		ln.Close()
		if i == tries || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("edge: http/3 listener (udp port %s; --http3=false turns it off): %w", port, err)
		}
	}
}

// wrapPublic applies step 1's connection-level parts to a public TCP
// listener: the PROXY protocol header when configured, else the
// ConnFilters (layers.go). Behind a PROXY-protocol load balancer the peer
// is the balancer and the visitor's address is known only once the
// header is read, so the filters are left to the request layers, which
// apply the same IP rules and flood caps per visitor.
func (s *Server) wrapPublic(ln net.Listener) net.Listener {
	if !s.cfg.ProxyProtocol {
		return s.filterConns(ln)
	}
	trusted := s.cfg.TrustedProxies
	return &proxyproto.Listener{
		Listener:          ln,
		ReadHeaderTimeout: orDuration(s.cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			// Only a trusted proxy may say who the visitor is; with no
			// list, every peer is the load balancer.
			if len(trusted) > 0 && !inPrefixes(trusted, addrIP(o.Upstream)) {
				return proxyproto.REJECT, nil
			}
			return proxyproto.REQUIRE, nil
		},
	}
}

// servePublic builds the public servers and starts them (the serve step).
func (s *Server) servePublic(h http.Handler) {
	cfg := s.cfg
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	plain := h
	if s.certs != nil {
		plain = s.acmeAndRedirect(h)
	}
	s.httpSrv = s.publicServer(plain, protocols)
	s.goServe("http", func() error { return s.httpSrv.Serve(s.httpLn) })
	if s.httpsLn == nil {
		return
	}
	secure := h
	if s.h3Ln != nil {
		s.h3Srv = &http3.Server{
			Handler:        h,
			TLSConfig:      s.h3TLS,
			QUICConfig:     s.h3QUICConfig(),
			MaxHeaderBytes: cfg.MaxHeaderBytes,
			IdleTimeout:    orDuration(cfg.IdleTimeout, DefaultIdleTimeout),
		}
		s.goServe("http/3", func() error { return s.h3Srv.ServeListener(s.h3Ln) })
		secure = s.altSvc(h)
	}
	tlsProtocols := new(http.Protocols)
	tlsProtocols.SetHTTP1(true)
	tlsProtocols.SetHTTP2(true)
	s.httpsSrv = s.publicServer(secure, tlsProtocols)
	s.httpsSrv.TLSConfig = s.certs.TLSConfig()
	s.goServe("https", func() error { return s.httpsSrv.ServeTLS(s.httpsLn, "", "") })
}

// h3QUICConfig is the QUIC configuration of the HTTP/3 listener.
func (s *Server) h3QUICConfig() *quic.Config {
	return &quic.Config{MaxIdleTimeout: orDuration(s.cfg.IdleTimeout, DefaultIdleTimeout), MaxIncomingStreams: 100}
}

// publicServer is an http.Server with the public listeners' limits.
func (s *Server) publicServer(h http.Handler, protocols *http.Protocols) *http.Server {
	cfg := s.cfg
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: orDuration(cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		IdleTimeout:       orDuration(cfg.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ConnState:         s.newConns.track,
		Protocols:         protocols,
		ErrorLog:          s.httpErrorLog(),
	}
}

// acmeAndRedirect is the plain listener's step 3: ACME HTTP-01
// validations are answered here, and a hostname that has a certificate
// is sent to https:// (308, so a POST stays a POST) unless
// Config.DisableHTTPSRedirect.
func (s *Server) acmeAndRedirect(h http.Handler) http.Handler {
	_, port, _ := net.SplitHostPort(s.httpsLn.Addr().String())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.certs.HandleHTTPChallenge(w, r) {
			return
		}
		host := routedHost(r.Host)
		if !s.cfg.DisableHTTPSRedirect && s.certs.HasCertificate(host) {
			target := "https://" + host
			if port != "443" {
				target += ":" + port
			}
			http.Redirect(w, r, target+r.URL.RequestURI(), http.StatusPermanentRedirect)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// altSvc announces HTTP/3 on HTTP/1.1 and HTTP/2 answers.
func (s *Server) altSvc(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.h3Srv.SetQUICHeaders(w.Header())
		h.ServeHTTP(w, r)
	})
}

// shutdownPublic stops the public listeners and waits (until ctx ends)
// for the requests in flight, closing connections that never sent one.
func (s *Server) shutdownPublic(ctx context.Context) error {
	var errs []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, srv := range []*http.Server{s.httpSrv, s.httpsSrv} {
			if srv != nil {
				srv.Shutdown(ctx)
			}
		}
	}()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
wait:
	for {
		s.newConns.closeAll()
		select {
		case <-done:
			break wait
		case <-t.C:
		}
	}
	if s.h3Srv != nil {
		if err := s.h3Srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			errs = append(errs, fmt.Errorf("edge: http/3 server: %w", err))
		}
		s.h3Srv.Close()
	}
	if s.h3Tr != nil {
		s.h3Ln.Close()
		s.h3Tr.Close() // not the socket, which Close closes with the others
	}
	return errors.Join(errs...)
}

// clientIP is the visitor's address as the edge trusts it: the peer's,
// unless the peer is a trusted proxy, whose X-Forwarded-For then names
// the visitor (the rightmost address that is not a trusted proxy).
func clientIP(r *http.Request, trusted []netip.Prefix) (ip netip.Addr, viaProxy bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	ip = ap.Addr().Unmap()
	if len(trusted) == 0 || !inPrefixes(trusted, ip) {
		return ip, false
	}
	xff := r.Header["X-Forwarded-For"]
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return ip, true // a malformed entry: trust nothing left of it
			}
			ip = a.Unmap()
			if !inPrefixes(trusted, ip) {
				return ip, true
			}
		}
	}
	return ip, true
}

func inPrefixes(ps []netip.Prefix, ip netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func addrIP(a net.Addr) netip.Addr {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// HTTPSAddr is the bound public HTTPS address, or nil without one.
func (s *Server) HTTPSAddr() net.Addr {
	if s.httpsLn == nil {
		return nil
	}
	return s.httpsLn.Addr()
}

// Certificates is the public HTTPS listener's certificate manager, or nil
// without one.
func (s *Server) Certificates() *publictls.Manager { return s.certs }
