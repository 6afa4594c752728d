package store

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
)

// Remote says how to reach an external etcd cluster securely: TLS with the
// cluster's CA and a client certificate (etcd's --client-cert-auth), and
// etcd's own user and password. The zero value dials https endpoints with
// the system roots and refuses plaintext ones that are not on this machine.
type Remote struct {
	// CAFile is a PEM bundle of the CAs that sign the etcd servers'
	// certificates. If empty, the system roots.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// clusters that authenticate clients by certificate. Both or neither.
	CertFile, KeyFile string
	// Username and Password authenticate to etcd's own auth (etcdctl user
	// add). If Username is empty, none is sent.
	Username, Password string
	// Insecure allows http:// endpoints that are not loopback: state, tunnel
	// records and connection records then cross the network in clear. If
	// false, such an endpoint is refused (ErrPlaintextEndpoint).
	Insecure bool
}

// ErrPlaintextEndpoint is returned by Open for an http:// endpoint that is
// not loopback without Remote.Insecure.
var ErrPlaintextEndpoint = errors.New("store: plaintext etcd endpoint off this machine")

// set reports whether any TLS setting is given.
func (r Remote) tlsSet() bool { return r.CAFile != "" || r.CertFile != "" || r.KeyFile != "" }

// clientTLS checks endpoints against r and returns the TLS config to dial
// them with (nil for plaintext endpoints). base, if set, is the starting
// point (Config.TLS).
func (r Remote) clientTLS(endpoints []string, base *tls.Config) (*tls.Config, error) {
	secure, plain := 0, 0
	for _, ep := range endpoints {
		scheme, host, err := splitEndpoint(ep)
		if err != nil {
			return nil, err
		}
		switch scheme {
		case "https", "unixs":
			secure++
		case "unix":
			plain++ // a socket on this machine
		case "http":
			plain++
			if !r.Insecure && !isLoopback(host) {
				return nil, fmt.Errorf("%w: %s sends tunnel records and etcd credentials in clear; use https:// with the cluster's CA, or allow it explicitly", ErrPlaintextEndpoint, ep)
			}
		}
	}
	if secure > 0 && plain > 0 {
		return nil, errors.New("store: etcd endpoints mix https and plaintext; use one kind")
	}
	if plain > 0 {
		if r.tlsSet() {
			return nil, errors.New("store: etcd CA or client certificate given, but the endpoints are not https://")
		}
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		conf = base.Clone()
	}
	if r.CAFile != "" {
		pem, err := os.ReadFile(r.CAFile)
		if err != nil {
			return nil, fmt.Errorf("store: etcd CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("store: etcd CA %s holds no PEM certificate", r.CAFile)
		}
		conf.RootCAs = pool
	}
	if (r.CertFile == "") != (r.KeyFile == "") {
		return nil, errors.New("store: an etcd client certificate needs both its certificate and its key file")
	}
	if r.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(r.CertFile, r.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("store: etcd client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// splitEndpoint returns an endpoint's scheme and host. A bare host:port
// is refused: whether it means TLS must be said.
func splitEndpoint(ep string) (scheme, host string, err error) {
	u, err := url.Parse(ep)
	if err != nil || u.Scheme == "" || (u.Host == "" && u.Path == "") {
		return "", "", fmt.Errorf("store: etcd endpoint %q: want https://host:port (or http://, unix://)", ep)
	}
	switch s := strings.ToLower(u.Scheme); s {
	case "http", "https":
		if u.Host == "" {
			return "", "", fmt.Errorf("store: etcd endpoint %q has no host", ep)
		}
		return s, u.Hostname(), nil
	case "unix", "unixs":
		return s, "", nil
	default:
		return "", "", fmt.Errorf("store: etcd endpoint %q: scheme %q is not http, https, unix or unixs", ep, u.Scheme)
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
