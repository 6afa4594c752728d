package carrier

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/adit-dev/adit/internal/logs"
)

// Options says how to reach a tunnel's TCP service through an edge.
type Options struct {
	// Hostname is the public hostname routed to the tunnel; it is sent as the
	// Host header and matched against the connector's ingress rules. Required.
	Hostname string
	// EdgeURL is where the edge's public listener is: http://host[:port] or
	// https://host[:port] (ws:// and wss:// too). It may name an IP; the Host
	// header is still Hostname. If empty, "https://" + Hostname.
	EdgeURL string
	// Destination is host:port for a bastion rule: the connector dials it
	// instead of a fixed origin. If empty, none is sent.
	Destination string
	// TLS configures https edge URLs. If nil, TLS 1.3 at least with the system
	// roots. If its ServerName is empty, the host of Hostname is verified.
	TLS *tls.Config
	// Header holds extra request headers for the upgrade request. Zero: none.
	Header http.Header
	// DialTimeout bounds connecting and the upgrade (the connector dialing the
	// origin included). If zero, 30s.
	DialTimeout time.Duration
	// Logger receives ServeListener's per-connection logs. If nil, discarded.
	Logger *slog.Logger
}

// Dial opens a TCP connection to the service that the connector of
// opts.Hostname's tunnel serves, through the edge. The connection is a *Conn.
// An edge that refuses (unknown hostname, tunnel offline, origin unreachable)
// gives an error with its status, its message and the request ID.
func Dial(ctx context.Context, opts Options) (net.Conn, error) {
	d, err := newDialer(opts)
	if err != nil {
		return nil, err
	}
	return d.dial(ctx)
}

// dialer is Options checked, with the HTTP client that carries the upgrade.
type dialer struct {
	opts   Options
	url    string
	header http.Header
	client *http.Client
}

func newDialer(opts Options) (*dialer, error) {
	if opts.Hostname == "" {
		return nil, errors.New("carrier: no hostname")
	}
	if strings.ContainsAny(opts.Hostname, "/ ") {
		return nil, fmt.Errorf("carrier: hostname %q: want a hostname like ssh.example.com, not a URL", opts.Hostname)
	}
	raw := opts.EdgeURL
	if raw == "" {
		raw = "https://" + opts.Hostname
	}
	if !strings.Contains(raw, "://") {
		return nil, fmt.Errorf("carrier: edge URL %q: want http://, https://, ws:// or wss:// and a host", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("carrier: edge URL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "http", "https", "ws", "wss":
	default:
		return nil, fmt.Errorf("carrier: edge URL %q: want http://, https://, ws:// or wss://", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("carrier: edge URL %q has no host", raw)
	}
	if opts.Destination != "" {
		if _, _, err := net.SplitHostPort(opts.Destination); err != nil {
			return nil, fmt.Errorf("carrier: destination %q: want host:port", opts.Destination)
		}
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 30 * time.Second
	}
	header := opts.Header.Clone()
	if header == nil {
		header = make(http.Header)
	}
	if opts.Destination != "" {
		header.Set(DestinationHeader, opts.Destination)
	}
	var tc *tls.Config
	if opts.TLS != nil {
		tc = opts.TLS.Clone()
	} else {
		tc = &tls.Config{MinVersion: tls.VersionTLS13}
	}
	if tc.ServerName == "" {
		tc.ServerName = hostOnly(opts.Hostname)
	}
	nd := &net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         nd.DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: opts.DialTimeout,
		// A WebSocket upgrade is HTTP/1.1; upgraded connections never go
		// back to the pool.
		ForceAttemptHTTP2: false,
		MaxIdleConns:      1,
		IdleConnTimeout:   time.Second,
	}
	return &dialer{opts: opts, url: u.String(), header: header, client: &http.Client{Transport: tr}}, nil
}

func (d *dialer) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.DialTimeout)
	defer cancel()
	// A refused upgrade may leave a kept-alive connection; none is reused.
	defer d.client.CloseIdleConnections()
	ws, resp, err := websocket.Dial(ctx, d.url, &websocket.DialOptions{
		HTTPClient:   d.client,
		HTTPHeader:   d.header,
		Host:         d.opts.Hostname,
		Subprotocols: []string{Subprotocol},
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, refusal(d.opts.Hostname, resp)
		}
		return nil, fmt.Errorf("carrier: connecting to %s through %s: %w", d.opts.Hostname, d.url, err)
	}
	if ws.Subprotocol() != Subprotocol {
		ws.CloseNow()
		return nil, fmt.Errorf("carrier: %s accepted the WebSocket without the %s protocol; is it an adit edge?", d.url, Subprotocol)
	}
	return NewConn(ws, nil, wsAddr(d.opts.Hostname)), nil
}

// RefusedError is the edge's answer when it did not carry the connection.
type RefusedError struct {
	Hostname  string
	Status    int    // the HTTP status, e.g. 502
	Message   string // the first line of the edge's error page, if any
	RequestID string // the edge's request ID, if any
}

func (e *RefusedError) Error() string {
	s := fmt.Sprintf("carrier: the edge refused the connection to %s: %d %s", e.Hostname, e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.RequestID != "" {
		s += " (request ID " + e.RequestID + ")"
	}
	return s
}

// requestIDHeader is the header the adit edge names its request ID in.
const requestIDHeader = "Adit-Request-Id"

func refusal(hostname string, resp *http.Response) error {
	e := &RefusedError{Hostname: hostname, Status: resp.StatusCode, RequestID: resp.Header.Get(requestIDHeader)}
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		line, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte("\n"))
		if len(line) > 0 && !bytes.HasPrefix(line, []byte("<")) {
			e.Message = string(line)
		}
	}
	return e
}

// ServeListener carries every connection ln accepts to opts.Hostname's
// service, each over its own WebSocket, until ctx is done or ln fails. It
// then closes ln, aborts the connections still open, waits for them and
// returns (nil after ctx ended). A connection the edge refuses is closed,
// and the refusal logged.
func ServeListener(ctx context.Context, ln net.Listener, opts Options) error {
	d, err := newDialer(opts)
	if err != nil {
		ln.Close()
		return err
	}
	log := logs.Component(opts.Logger, "carrier")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = make(map[net.Conn]struct{})
	)
	defer func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			Abort(c)
		}
		mu.Unlock()
		wg.Wait()
	}()
	for {
		local, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("carrier: accept: %w", err)
		}
		mu.Lock()
		conns[local] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, local)
				mu.Unlock()
			}()
			from := local.RemoteAddr().String()
			remote, err := d.dial(ctx)
			if err != nil {
				log.Error("connection not carried", "from", from, "hostname", opts.Hostname, "err", err)
				Abort(local)
				return
			}
			mu.Lock()
			conns[remote] = struct{}{}
			mu.Unlock()
			log.Debug("connection carried", "from", from, "hostname", opts.Hostname)
			err = Pipe(local, remote)
			mu.Lock()
			delete(conns, remote)
			mu.Unlock()
			if err != nil && ctx.Err() == nil {
				log.Warn("connection broke off", "from", from, "hostname", opts.Hostname, "err", err)
			}
		}()
	}
}

// hostOnly strips a port from host.
func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return host
}
