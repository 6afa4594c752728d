package tunnelws

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// proxyFor returns the proxy to reach the edge at addr through, or nil.
func (c Config) proxyFor(addr string) (*url.URL, error) {
	pf := c.Proxy
	if pf == nil {
		// Not http.ProxyFromEnvironment: it reads the environment once
		// per process.
		pf = httpproxy.FromEnvironment().ProxyFunc()
	}
	u, err := pf(&url.URL{Scheme: "https", Host: addr})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	if u == nil {
		return nil, nil
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("proxy %s: scheme %q not supported, only http", u.Redacted(), u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("proxy %s: no host", u.Redacted())
	}
	return u, nil
}

// dialTCP connects to addr, directly or through the configured proxy.
func (c Config) dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	proxy, err := c.proxyFor(addr)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	if c.LocalAddr != nil {
		d.LocalAddr = &net.TCPAddr{IP: c.LocalAddr}
	}
	if proxy == nil {
		return d.DialContext(ctx, "tcp", addr)
	}
	return dialConnect(ctx, &d, proxy, addr)
}

// dialConnect opens a tunnel to addr through an HTTP proxy with CONNECT.
func dialConnect(ctx context.Context, d *net.Dialer, proxy *url.URL, addr string) (net.Conn, error) {
	paddr := proxy.Host
	if proxy.Port() == "" {
		paddr = net.JoinHostPort(proxy.Hostname(), "80")
	}
	pc, err := d.DialContext(ctx, "tcp", paddr)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", proxy.Redacted(), err)
	}
	conn, err := connect(ctx, pc, proxy, addr)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("proxy %s: %w", proxy.Redacted(), err)
	}
	return conn, nil
}

func connect(ctx context.Context, pc net.Conn, proxy *url.URL, addr string) (net.Conn, error) {
	// The context bounds the exchange; once it is done, so is ctx.Err.
	stop := context.AfterFunc(ctx, func() { pc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var b strings.Builder
	fmt.Fprintf(&b, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", addr, addr)
	if u := proxy.User; u != nil {
		pw, _ := u.Password()
		cred := base64.StdEncoding.EncodeToString([]byte(u.Username() + ":" + pw))
		fmt.Fprintf(&b, "Proxy-Authorization: Basic %s\r\n", cred)
	}
	b.WriteString("\r\n")
	if _, err := pc.Write([]byte(b.String())); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("CONNECT %s: %w", addr, err)
	}
	br := bufio.NewReader(pc)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("CONNECT %s: %w", addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("CONNECT %s: %s", addr, resp.Status)
	}
	if !stop() {
		return nil, fmt.Errorf("CONNECT %s: %w", addr, ctx.Err())
	}
	pc.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		// The edge speaks only after the TLS ClientHello: anything here is
		// the proxy misbehaving.
		return nil, fmt.Errorf("CONNECT %s: %d unexpected bytes after the proxy's answer", addr, br.Buffered())
	}
	return pc, nil
}
