package connector

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/adit-dev/adit/carrier"
	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/tunnel"
)

// TCP streams (tunnel.StreamTCP) come from `adit access` and from the
// edge's public TCP ports. The ingress rule is matched by the stream's host
// with path "/" and must be a TCP kind:
//
//   - tcp, ssh, rdp, smb: the rule's origin;
//   - bastion, or any rule with originRequest bastionMode: the destination
//     the client names (carrier.DestinationHeader or cloudflared's
//     carrier.JumpDestinationHeader), checked against the rule's ipRules;
//   - socks-proxy, or a tcp kind with originRequest proxyType "socks": the
//     client speaks SOCKS5 on the stream (socks.go), destinations checked
//     against ipRules.
//
// The connector dials with the rule's connectTimeout and tcpKeepAlive,
// answers 200 once the origin is connected (502 with the cause otherwise),
// and then copies bytes both ways, passing half-closes on.

// tcpMode is how a rule serves a TCP stream.
type tcpMode int

const (
	tcpNone    tcpMode = iota // not a TCP rule
	tcpFixed                  // the rule's own origin
	tcpBastion                // the destination the client names
	tcpSOCKS                  // a SOCKS5 server on the stream
)

// tcpModeOf says how rule serves TCP streams.
func tcpModeOf(rule *ingress.Rule) tcpMode {
	k := rule.Service.Kind
	switch {
	case k == ingress.KindSocksProxy:
		return tcpSOCKS
	case isTCPKind(k) && rule.Origin.ProxyType == "socks":
		return tcpSOCKS
	case k == ingress.KindBastion || rule.Origin.BastionMode:
		return tcpBastion
	case isTCPKind(k):
		return tcpFixed
	}
	return tcpNone
}

func isTCPKind(k ingress.Kind) bool {
	switch k {
	case ingress.KindTCP, ingress.KindSSH, ingress.KindRDP, ingress.KindSMB, ingress.KindBastion:
		return true
	}
	return false
}

// serveTCP serves one TCP stream: match the rule, dial the origin, answer,
// and pipe.
func (c *Connector) serveTCP(s tunnel.Stream, br *bufio.Reader, h *tunnel.RequestHeader, log *slog.Logger) {
	rt := c.router.Load()
	rule, _ := rt.match(h.Host, "/")
	if rule == nil {
		log.Warn("no ingress rule matches a tcp stream")
		respondError(s, http.StatusBadGateway, fmt.Sprintf("no ingress rule matches host %q", h.Host))
		return
	}
	if why := rt.checkAccess(rule.Index, h.Host, h.Header); why != "" {
		c.rl.Logger(log).Warn("refused by originRequest.access", "rule", rule.Index+1, "reason", why)
		respondError(s, http.StatusForbidden, "refused by the connector's Access check (originRequest.access): "+why)
		return
	}
	log = log.With("rule", rule.Index+1, "service", rule.Service.String())
	mode := tcpModeOf(rule)
	if mode == tcpNone {
		msg := fmt.Sprintf("ingress rule %d serves %s over HTTP, not TCP; reach it through the edge's HTTP listener, not `adit access` or a TCP port", rule.Index+1, rule.Service.Kind)
		log.Warn("" + msg)
		respondError(s, http.StatusMisdirectedRequest, msg) // the edge shows a 4xx to the client
		return
	}
	d := newTCPDialer(rule.Origin)
	stream := &streamConn{s: s, br: br}

	if mode == tcpSOCKS {
		if err := tunnel.WriteMessage(s, &tunnel.ResponseHeader{Status: http.StatusOK}); err != nil {
			log.Debug("edge went away", "err", err)
			return
		}
		log.Debug("socks stream open")
		serveSOCKS(stream, d, log)
		return
	}

	dest := ""
	if mode == tcpFixed {
		dest = rule.Service.URL.Host
	} else {
		var err error
		if dest, err = bastionDestination(h.Header); err != nil {
			msg := fmt.Sprintf("ingress rule %d is a bastion: %v", rule.Index+1, err)
			log.Warn("" + msg)
			respondError(s, http.StatusBadRequest, msg)
			return
		}
	}
	log = log.With("destination", dest)
	ctx, cancel := context.WithTimeout(context.Background(), rule.Origin.ConnectTimeout)
	origin, err := d.dial(ctx, dest, mode == tcpBastion)
	cancel()
	if err != nil {
		var denied *deniedError
		if errors.As(err, &denied) {
			log.Warn("destination refused by ipRules", "err", err)
		} else {
			log.Error("origin unreachable", "err", err)
		}
		respondError(s, http.StatusBadGateway, err.Error())
		return
	}
	if err := tunnel.WriteMessage(s, &tunnel.ResponseHeader{Status: http.StatusOK}); err != nil {
		origin.Close()
		log.Debug("edge went away", "err", err)
		return
	}
	log.Debug("tcp stream open")
	if err := carrier.Pipe(stream, origin); err != nil {
		log.Debug("tcp stream broke off", "err", err)
		return
	}
	log.Debug("tcp stream closed")
}

// bastionDestination reads the destination a client asked a bastion rule
// for: host:port, or a URL whose host is host:port (cloudflared accepts
// "tcp://host:port").
func bastionDestination(h http.Header) (string, error) {
	v := strings.TrimSpace(h.Get(carrier.DestinationHeader))
	if v == "" {
		v = strings.TrimSpace(h.Get(carrier.JumpDestinationHeader))
	}
	if v == "" {
		return "", errors.New("no destination given (adit access --destination host:port)")
	}
	return parseDestination(v)
}

// parseDestination checks a bastion destination and returns it as host:port.
func parseDestination(v string) (string, error) {
	dest := v
	if strings.Contains(v, "://") {
		u, err := url.Parse(v)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("destination %q: want host:port", v)
		}
		dest = u.Host
	}
	host, port, err := net.SplitHostPort(dest)
	if err != nil || host == "" {
		return "", fmt.Errorf("destination %q: want host:port", v)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("destination %q: port %q is not from 1 to 65535", v, port)
	}
	if strings.ContainsAny(host, " /\\@?#%") {
		return "", fmt.Errorf("destination %q: %q is not a host name or address", v, host)
	}
	return net.JoinHostPort(host, port), nil
}

// tcpDialer dials TCP origins with a rule's options.
type tcpDialer struct {
	nd    net.Dialer
	rules []ingress.IPRule
}

func newTCPDialer(o ingress.OriginRequest) *tcpDialer {
	d := &tcpDialer{rules: o.IPRules}
	d.nd.Timeout = o.ConnectTimeout
	d.nd.KeepAlive = o.TCPKeepAlive
	if o.NoHappyEyeballs {
		d.nd.FallbackDelay = -1
	}
	return d
}

// deniedError is a destination the rule's ipRules refuse.
type deniedError struct {
	dest string
}

func (e *deniedError) Error() string {
	return fmt.Sprintf("destination %s is not allowed by the rule's ipRules", e.dest)
}

// dial connects to dest (host:port). With checked and ipRules set, only
// addresses the rules allow are dialled, after resolving a name, so the
// address checked is the address connected to.
func (d *tcpDialer) dial(ctx context.Context, dest string, checked bool) (net.Conn, error) {
	if !checked || len(d.rules) == 0 {
		return d.nd.DialContext(ctx, "tcp", dest)
	}
	host, portStr, err := net.SplitHostPort(dest)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("destination %s: bad port", dest)
	}
	addrs, err := d.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	var allowed []netip.Addr
	for _, a := range addrs {
		if ipAllowed(d.rules, a, port) {
			allowed = append(allowed, a)
		}
	}
	if len(allowed) == 0 {
		return nil, &deniedError{dest: dest}
	}
	var firstErr error
	for _, a := range allowed {
		c, err := d.nd.DialContext(ctx, "tcp", netip.AddrPortFrom(a, uint16(port)).String())
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// resolve returns the addresses of host: itself if it is an IP literal.
func (d *tcpDialer) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	r := d.nd.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs, nil
}

// ipAllowed applies ipRules to a destination, as cloudflared does: no rules
// allow everything; otherwise the first rule whose prefix holds addr and
// whose ports (all, if none are listed) include port decides, and a
// destination no rule matches is denied. A rule whose prefix does not parse
// (ingress.New refuses those) matches nothing.
func ipAllowed(rules []ingress.IPRule, addr netip.Addr, port int) bool {
	if len(rules) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, r := range rules {
		p, err := netip.ParsePrefix(r.Prefix)
		if err != nil || !p.Contains(addr) {
			continue
		}
		if len(r.Ports) > 0 && !containsInt(r.Ports, port) {
			continue
		}
		return r.Allow
	}
	return false
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// streamConn is a tunnel stream as a byte pipe for carrier.Pipe: reads go
// through the buffered reader that holds bytes read past the header.
type streamConn struct {
	s  tunnel.Stream
	br *bufio.Reader
}

func (c *streamConn) Read(p []byte) (int, error)  { return c.br.Read(p) }
func (c *streamConn) Write(p []byte) (int, error) { return c.s.Write(p) }
func (c *streamConn) CloseWrite() error           { return c.s.CloseWrite() }
func (c *streamConn) Close() error                { return c.s.Close() }
func (c *streamConn) Abort() error                { return c.s.Close() }
