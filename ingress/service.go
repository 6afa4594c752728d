package ingress

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Kind says what sort of origin a [Service] is.
type Kind string

// Service kinds. HTTP kinds are served by the origin package as HTTP
// requests; the TCP kinds (tcp, ssh, rdp, smb, bastion, socks-proxy) by the
// connector as TCP streams (connector/tcp.go), reached with `adit access` or
// a public TCP port route.
const (
	KindHTTP       Kind = "http"        // http://host[:port] (also ws://)
	KindHTTPS      Kind = "https"       // https://host[:port] (also wss://)
	KindH2C        Kind = "h2c"         // h2c://host[:port]: HTTP/2 without TLS
	KindUnix       Kind = "unix"        // unix:/path: HTTP over a unix socket
	KindUnixTLS    Kind = "unix+tls"    // unix+tls:/path: HTTPS over a unix socket
	KindHTTPStatus Kind = "http_status" // http_status:NNN: a fixed status, no origin
	KindHelloWorld Kind = "hello_world" // hello_world: the built-in test page
	KindTCP        Kind = "tcp"         // tcp://host:port
	KindSSH        Kind = "ssh"         // ssh://host[:port], port 22 if absent
	KindRDP        Kind = "rdp"         // rdp://host[:port], port 3389 if absent
	KindSMB        Kind = "smb"         // smb://host[:port], port 445 if absent
	KindBastion    Kind = "bastion"     // bastion: the client names the destination
	KindSocksProxy Kind = "socks-proxy" // socks-proxy: a SOCKS5 proxy
)

// IsHTTP reports whether k is served as HTTP requests (rather than TCP streams).
func (k Kind) IsHTTP() bool {
	switch k {
	case KindHTTP, KindHTTPS, KindH2C, KindUnix, KindUnixTLS, KindHTTPStatus, KindHelloWorld:
		return true
	}
	return false
}

// Service is a parsed ingress service.
type Service struct {
	// Kind says which of the fields below is set.
	Kind Kind
	// URL is the origin for the URL kinds (http, https, h2c, tcp, ssh, rdp, smb):
	// scheme and host[:port] only. ws and wss are given as http and https; ssh, rdp
	// and smb get their default port if none was written. Nil for other kinds.
	URL *url.URL
	// Status is the status code of http_status, else zero.
	Status int
	// SocketPath is the socket of unix and unix+tls, else empty.
	SocketPath string

	raw string
}

// String returns the service as written in the config.
func (s Service) String() string { return s.raw }

// ParseService parses an ingress service: http://host[:port], https://…, ws://…,
// wss://…, h2c://host[:port], unix:/path, unix+tls:/path, http_status:NNN (100 to
// 599), hello_world, tcp://host:port, ssh://host[:port], rdp://…, smb://…, bastion or
// socks-proxy. A URL may not have a path other than "/" (the origin gets the
// client's path), a query, a fragment or a user.
func ParseService(s string) (Service, error) {
	svc, err := parseService(s)
	if err != nil {
		return Service{}, fmt.Errorf("ingress: service %q: %w", s, err)
	}
	return svc, nil
}

const serviceForms = "http://, https://, unix:, unix+tls:, http_status:, hello_world, tcp://, ssh://, rdp://, smb://, bastion, h2c://"

func parseService(s string) (Service, error) {
	svc := Service{raw: s}
	switch {
	case s == "":
		return svc, errors.New("required")
	case s == "hello_world" || s == "hello-world":
		svc.Kind = KindHelloWorld
		return svc, nil
	case s == "bastion":
		svc.Kind = KindBastion
		return svc, nil
	case s == "socks-proxy":
		svc.Kind = KindSocksProxy
		return svc, nil
	case strings.HasPrefix(s, "http_status:"):
		code, err := strconv.Atoi(strings.TrimPrefix(s, "http_status:"))
		if err != nil || code < 100 || code > 599 {
			return svc, errors.New("want http_status: and a status code from 100 to 599")
		}
		svc.Kind, svc.Status = KindHTTPStatus, code
		return svc, nil
	case strings.HasPrefix(s, "unix:"):
		svc.Kind, svc.SocketPath = KindUnix, strings.TrimPrefix(s, "unix:")
	case strings.HasPrefix(s, "unix+tls:"):
		svc.Kind, svc.SocketPath = KindUnixTLS, strings.TrimPrefix(s, "unix+tls:")
	}
	if svc.Kind != "" { // unix sockets
		if svc.SocketPath == "" {
			return svc, errors.New("want a socket path after the colon, like unix:/run/app.sock")
		}
		if strings.ContainsRune(svc.SocketPath, 0) {
			return svc, errors.New("socket path has a NUL byte")
		}
		return svc, nil
	}

	scheme, _, ok := strings.Cut(s, "://")
	if !ok {
		return svc, fmt.Errorf("not a service; want one of %s", serviceForms)
	}
	var defaultPort string
	switch strings.ToLower(scheme) {
	case "http", "ws":
		svc.Kind = KindHTTP
	case "https", "wss":
		svc.Kind = KindHTTPS
	case "h2c":
		svc.Kind = KindH2C
	case "tcp":
		svc.Kind = KindTCP
	case "ssh":
		svc.Kind, defaultPort = KindSSH, "22"
	case "rdp":
		svc.Kind, defaultPort = KindRDP, "3389"
	case "smb":
		svc.Kind, defaultPort = KindSMB, "445"
	default:
		return svc, fmt.Errorf("unknown scheme %q; want one of %s", scheme, serviceForms)
	}
	u, err := url.Parse(s)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return svc, err
	}
	switch {
	case u.Hostname() == "":
		return svc, errors.New("has no host")
	case u.User != nil:
		return svc, errors.New("must not carry a user or password")
	case u.Path != "" && u.Path != "/":
		return svc, errors.New("must not have a path: the origin gets the path the client asked for")
	case u.RawQuery != "" || u.ForceQuery:
		return svc, errors.New("must not have a query")
	case u.Fragment != "":
		return svc, errors.New("must not have a fragment")
	case strings.HasSuffix(u.Host, ":"):
		return svc, errors.New("has an empty port")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return svc, fmt.Errorf("port %s is not from 1 to 65535", p)
		}
	} else if defaultPort != "" {
		u.Host += ":" + defaultPort
	} else if svc.Kind == KindTCP {
		return svc, errors.New("needs a port, like tcp://localhost:5432")
	}
	svc.URL = &url.URL{Scheme: string(svc.Kind), Host: u.Host}
	return svc, nil
}
