package edge

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// FuzzClientIP: whatever X-Forwarded-For a client sends, the visitor's
// address is the peer's unless the peer is a trusted proxy, and then an
// address the header or the peer named.
func FuzzClientIP(f *testing.F) {
	f.Add("10.0.0.1:5555", "6.6.6.6, 198.51.100.7")
	f.Add("192.0.2.1:80", "6.6.6.6")
	f.Add("10.0.0.1:5555", "junk, 10.0.0.2")
	f.Add("[2001:db8::1]:443", "::ffff:1.2.3.4")
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := &http.Request{RemoteAddr: remote, Header: http.Header{"X-Forwarded-For": {xff}}}
		ip, viaProxy := clientIP(r, trusted)
		peer, err := netip.ParseAddrPort(remote)
		if err != nil {
			if ip.IsValid() || viaProxy {
				t.Fatalf("a bad peer address %q gave %v, %v", remote, ip, viaProxy)
			}
			return
		}
		p := peer.Addr().Unmap()
		if !trusted[0].Contains(p) {
			if ip != p || viaProxy {
				t.Fatalf("untrusted peer %v: got %v (via proxy %v), want the peer", p, ip, viaProxy)
			}
			return
		}
		if ip == p {
			return
		}
		for part := range strings.SplitSeq(xff, ",") {
			if a, err := netip.ParseAddr(strings.TrimSpace(part)); err == nil && a.Unmap() == ip {
				return
			}
		}
		t.Fatalf("visitor %v is neither the peer %v nor in X-Forwarded-For %q", ip, p, xff)
	})
}
