package edge

import (
	"net"
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

// TestListenHTTPS: HTTPS and HTTP/3 share a port number; a given port
// whose UDP twin is taken is refused naming HTTP/3 and the way out.
func TestListenHTTPS(t *testing.T) {
	ln, pc, err := listenHTTPS("127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	_, tcpPort, _ := net.SplitHostPort(ln.Addr().String())
	_, udpPort, _ := net.SplitHostPort(pc.LocalAddr().String())
	ln.Close()
	pc.Close()
	if tcpPort != udpPort {
		t.Fatalf("tcp port %s, udp port %s; want the same", tcpPort, udpPort)
	}

	// The UDP port held by someone else, the TCP one free.
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, _, err = listenHTTPS(taken.LocalAddr().String(), true)
	if err == nil || !strings.Contains(err.Error(), "http/3 listener") || !strings.Contains(err.Error(), "--http3=false") {
		t.Fatalf("UDP port taken: got %v, want an http/3 listener error naming --http3=false", err)
	}
	ln, pc, err = listenHTTPS(taken.LocalAddr().String(), false)
	if err != nil {
		t.Fatalf("without HTTP/3: %v", err)
	}
	if pc != nil {
		t.Errorf("without HTTP/3: got a UDP socket")
	}
	ln.Close()
}
