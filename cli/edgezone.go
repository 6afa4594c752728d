package cli

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/adit-dev/adit/edgedns/edgesrv"
)

// edgesFromZone finds the fleet's tunnel addresses through the SRV
// records the edges publish for zone (`tunnel run --edge-zone`; package
// edgedns): QUIC's, or the WebSocket fallback's for --protocol websocket
// (the same port number). If the lookup fails, the credentials' addresses
// serve, when there are some.
// A nil resolver is net.DefaultResolver.
func edgesFromZone(ctx context.Context, log *slog.Logger, r *net.Resolver, zone, protocol string, fallback []string) ([]string, error) {
	proto := edgesrv.UDP
	if protocol == "websocket" {
		proto = edgesrv.TCP
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addrs, err := edgesrv.Lookup(ctx, r, proto, zone)
	if err != nil {
		if len(fallback) == 0 {
			return nil, err
		}
		log.Warn("finding the edges through DNS failed; using the credentials' addresses", "zone", zone, "err", err, "edge", fallback)
		return fallback, nil
	}
	return addrs, nil
}
