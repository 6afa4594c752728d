package ingress

import (
	"reflect"
	"slices"
	"time"
)

// OriginRequest is the effective set of cloudflared's originRequest options for one
// rule: the defaults, overridden by the global originRequest section, overridden by
// the rule's own, field by field. Every field's zero value means cloudflared's default
// (stated on the field); [OriginRequest.WithDefaults] fills those in, and [New] always
// does, so a Rule's Origin holds the values in force.
type OriginRequest struct {
	// ConnectTimeout bounds establishing a TCP connection to the origin. Zero means 30s.
	ConnectTimeout time.Duration
	// TLSTimeout bounds the TLS handshake with an https origin. Zero means 10s.
	TLSTimeout time.Duration
	// TCPKeepAlive is the TCP keep-alive period of origin connections. Zero means 30s.
	TCPKeepAlive time.Duration
	// NoHappyEyeballs turns off racing IPv6 against IPv4 (RFC 6555) when dialing.
	// Zero (false) keeps it on.
	NoHappyEyeballs bool
	// KeepAliveConnections is the most idle connections kept open to the origin.
	// Zero means 1024 (cloudflared's default is 100; see DefaultKeepAliveConnections).
	KeepAliveConnections int
	// KeepAliveTimeout is how long an idle origin connection is kept. Zero means 1m30s.
	KeepAliveTimeout time.Duration
	// HTTPHostHeader, when set, replaces the Host header sent to the origin (the
	// public hostname is then sent as X-Forwarded-Host). Zero: the public hostname.
	HTTPHostHeader string
	// OriginServerName is the name sent as TLS SNI and checked against the origin's
	// certificate. Zero: the service URL's host.
	OriginServerName string
	// MatchSNIToHost sends the request's Host (after HTTPHostHeader) as SNI and checks
	// the certificate against it, when OriginServerName is not set. Zero: off.
	MatchSNIToHost bool
	// CAPool is a PEM file of CA certificates trusted for the origin, in addition to
	// the system's. Zero: the system's only.
	CAPool string
	// NoTLSVerify skips verifying the origin's certificate. Zero: verify.
	NoTLSVerify bool
	// DisableChunkedEncoding sends request bodies with a Content-Length rather than
	// chunked (for WSGI origins). Zero: chunked when the length is unknown.
	DisableChunkedEncoding bool
	// HTTP2Origin speaks HTTP/2 to https origins. Zero: HTTP/1.1.
	HTTP2Origin bool
	// BastionMode makes a TCP service a bastion (the client picks the destination).
	// Zero: off.
	BastionMode bool
	// ProxyAddress is the listen address of a SOCKS/bastion proxy. Zero means 127.0.0.1.
	ProxyAddress string
	// ProxyPort is the listen port of a SOCKS/bastion proxy. Zero: a random port.
	ProxyPort int
	// ProxyType is "socks" for a SOCKS5 proxy. Zero: a plain TCP proxy.
	ProxyType string
	// IPRules allow or deny destinations of the SOCKS and bastion services, first
	// match wins. Zero: all allowed.
	IPRules []IPRule
	// Access is the Access check asked for; the connector enforces Required.
	// Zero: none.
	Access Access
}

// Defaults of the originRequest options, as in cloudflared except
// DefaultKeepAliveConnections.
const (
	DefaultConnectTimeout = 30 * time.Second
	DefaultTLSTimeout     = 10 * time.Second
	DefaultTCPKeepAlive   = 30 * time.Second
	// DefaultKeepAliveConnections is 1024, not cloudflared's 100: with more
	// requests in flight than idle slots, every answer past the 100th closes its
	// origin connection and the next request dials a new one (at 500 concurrent
	// requests the origin saw ~3,000 new connections a second, all left in
	// TIME_WAIT). Idle connections still close after KeepAliveTimeout.
	DefaultKeepAliveConnections = 1024
	DefaultKeepAliveTimeout     = 90 * time.Second
	DefaultProxyAddress         = "127.0.0.1"
)

// WithDefaults returns o with every zero field that has a non-zero default set to it.
func (o OriginRequest) WithDefaults() OriginRequest {
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.TLSTimeout == 0 {
		o.TLSTimeout = DefaultTLSTimeout
	}
	if o.TCPKeepAlive == 0 {
		o.TCPKeepAlive = DefaultTCPKeepAlive
	}
	if o.KeepAliveConnections == 0 {
		o.KeepAliveConnections = DefaultKeepAliveConnections
	}
	if o.KeepAliveTimeout == 0 {
		o.KeepAliveTimeout = DefaultKeepAliveTimeout
	}
	if o.ProxyAddress == "" {
		o.ProxyAddress = DefaultProxyAddress
	}
	return o
}

// Apply returns base with every field that c sets replaced by c's value. Each field
// of OriginRequestConfig sets the OriginRequest field of the same name.
func (c *OriginRequestConfig) Apply(base OriginRequest) OriginRequest {
	o := base
	src, dst := reflect.ValueOf(c).Elem(), reflect.ValueOf(&o).Elem()
	for i := range src.NumField() {
		v := src.Field(i)
		if v.IsNil() || v.Kind() == reflect.Slice && v.Len() == 0 {
			continue // unset: inherit
		}
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		to := dst.FieldByName(src.Type().Field(i).Name)
		to.Set(v.Convert(to.Type()))
	}
	// Lists are copied so the result shares nothing with c.
	if len(c.IPRules) > 0 {
		o.IPRules = slices.Clone(c.IPRules)
		for i := range o.IPRules {
			o.IPRules[i].Ports = slices.Clone(o.IPRules[i].Ports)
		}
	}
	if c.Access != nil {
		o.Access.AUDTag = slices.Clone(c.Access.AUDTag)
	}
	return o
}
