package origin

import (
	"context"
	"log/slog"
	"net"

	"github.com/adit-dev/adit/ingress"
)

// NewDialHTTP returns a service that speaks HTTP/1.1 over the connections
// dial returns, one connection per request (no keep-alive), with the
// default originRequest options: an origin in the same process, such as
// the listener of connector.Listen, where each request's connection can
// carry that request's client address. name is its String. Upgrades
// (WebSocket) work as with any origin: after a 101 the connection is the
// upgraded one. A nil logger discards logs.
func NewDialHTTP(name string, dial func(ctx context.Context) (net.Conn, error), logger *slog.Logger) (HTTPService, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := proxyTarget{name: name, kind: ingress.KindHTTP, scheme: "http", host: "localhost", dial: dial}
	p, err := newProxy(t, ingress.OriginRequest{}.WithDefaults(), logger.With("service", name))
	if err != nil {
		return nil, err
	}
	p.transport.DisableKeepAlives = true
	return p, nil
}
