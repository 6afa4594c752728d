// Package layer is the contract between the edge and the packages that
// judge a public request before it goes down a tunnel: per-hostname IP
// rules, rate limits, the WAF and Access (DESIGN.md, "The edge's layers for
// a public request", step 5).
//
// The edge runs a request through its steps in one documented place
// (edge/layers.go): listener and connection filters, TLS, HTTP parsing,
// the router (Host → tunnel), then the chain of Layers in order, and last
// the proxy, which opens a stream on one of the tunnel's connections. A
// Layer wraps the rest of the chain: it may answer the request itself (a
// refusal page through Refuse, a login redirect), pass it on, or pass it on
// with its body or ResponseWriter wrapped (the WAF's inspection).
//
// Every layer is built from the same Deps: the etcd client it watches its
// own records with (into memory: the request path never waits on etcd),
// a logger, and the edge's metrics registry. A layer with nothing to do for
// a hostname must cost next to nothing: one map lookup, no allocation.
package layer

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Request is what the edge knows of a public request once it is routed.
// The edge allocates one per request; layers read it and may set Identity.
type Request struct {
	// ID is the request ID: the Adit-Request-Id header on the answer, the
	// connector's log, and every refusal page.
	ID string
	// Host is the routed hostname: lowercase, without a port.
	Host string
	// TunnelID is the tunnel the router chose for Host.
	TunnelID string
	// ClientIP is the visitor's address as the edge trusts it: the TCP or
	// QUIC peer, or what the PROXY protocol header or a trusted proxy's
	// X-Forwarded-For said.
	ClientIP netip.Addr
	// ClientAddr is ClientIP with the port, as "ip:port", for logs and the
	// stream header.
	ClientAddr string
	// TLS says the request arrived over HTTPS (TCP or QUIC).
	TLS bool
	// Identity is who Access let through: nil until the Access layer has
	// run, and nil for a hostname without an Access application.
	Identity *Identity
}

// Identity is an authenticated visitor: a person who logged in through an
// identity provider, or a machine with a service token.
type Identity struct {
	// App is the Access application's name.
	App string
	// Email, Groups and IdP describe a person; empty for a service token.
	Email  string
	Groups []string
	IdP    string
	// ServiceToken is the service token's name, when a machine presented one.
	ServiceToken string
	// Assertion is the signed JWT the origin receives
	// (Adit-Access-Jwt-Assertion), if the Access layer issued one.
	Assertion string
}

// Handler serves a routed request. The proxy is the chain's last Handler.
type Handler interface {
	ServeRouted(w http.ResponseWriter, r *http.Request, req *Request)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(w http.ResponseWriter, r *http.Request, req *Request)

// ServeRouted calls f.
func (f HandlerFunc) ServeRouted(w http.ResponseWriter, r *http.Request, req *Request) { f(w, r, req) }

// Layer is one step of the chain between the router and the proxy.
type Layer interface {
	// Name names the layer in logs and in metric labels ("ip-rules",
	// "ratelimit", "waf", "access").
	Name() string
	// Wrap returns the Handler that runs this layer, then next (or not).
	// It is called once when the edge builds its chain.
	Wrap(next Handler) Handler
	// Close stops the layer's watches and goroutines.
	Close() error
}

// ConnFilter judges a public connection when it is accepted, before any
// byte of it is parsed (DESIGN.md step 1): global deny rules and
// per-address caps. Allow returns false to have the edge close the
// connection at once; otherwise done is called when the connection ends.
type ConnFilter interface {
	Allow(ip netip.Addr) (done func(), ok bool)
}

// Deps is what the edge gives every layer it builds.
type Deps struct {
	// Ctx ends when the edge closes.
	Ctx context.Context
	// Etcd is the client of the edge's store.
	Etcd *clientv3.Client
	// Logger is the edge's logger; a layer adds its own attributes.
	Logger *slog.Logger
	// Metrics is the edge's registry; a layer registers its metrics here,
	// named adit_edge_<layer>_... .
	Metrics prometheus.Registerer
}
