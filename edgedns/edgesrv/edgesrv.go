// Package edgesrv finds the edges of an adit fleet through DNS: the edges
// that serve a zone (`adit edge --dns-zone ZONE`, package edgedns) answer
// SRV records naming each live edge's tunnel address,
//
//	_adit-tunnel._udp.ZONE  QUIC (UDP)
//	_adit-tunnel._tcp.ZONE  WebSocket over TLS (TCP), the same port number
//
// and a connector given the zone looks them up to refresh its edge list.
// It uses the standard library's resolver only, so a connector built
// without the edge carries no DNS server with it.
package edgesrv

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// The SRV service and protocol labels of the tunnel records.
const (
	Service = "adit-tunnel"
	UDP     = "udp" // QUIC
	TCP     = "tcp" // WebSocket
)

// Name is the SRV record name of proto ("udp" or "tcp") in zone:
// "_adit-tunnel._udp.example.com.".
func Name(proto, zone string) string {
	return "_" + Service + "._" + proto + "." + strings.TrimSuffix(zone, ".") + "."
}

// Lookup returns the tunnel addresses ("host:port") the edges of zone
// publish for proto, in the order RFC 2782 asks for (priority, then
// weighted at random). A nil resolver is net.DefaultResolver.
func Lookup(ctx context.Context, r *net.Resolver, proto, zone string) ([]string, error) {
	if r == nil {
		r = net.DefaultResolver
	}
	_, srvs, err := r.LookupSRV(ctx, Service, proto, strings.TrimSuffix(zone, "."))
	if err != nil {
		return nil, fmt.Errorf("edgesrv: looking up the edges of %s: %w", zone, err)
	}
	addrs := make([]string, 0, len(srvs))
	for _, s := range srvs {
		if s.Target == "." || s.Port == 0 { // "." says: no service here
			continue
		}
		addrs = append(addrs, net.JoinHostPort(strings.TrimSuffix(s.Target, "."), strconv.Itoa(int(s.Port))))
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("edgesrv: %s publishes no edge", Name(proto, zone))
	}
	return addrs, nil
}
