package edgedns

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge/edgeview"
)

// Bounds on what the registry may hold, for the answers' sake: a record
// past them is cut (and truncation keeps a UDP answer within its size).
const (
	maxEdges     = 1024
	maxEdgeAddrs = 16
	maxLabelBase = 40
)

// edge is one live edge as DNS answers with it.
type edge struct {
	name    string
	label   string // its DNS label: LABEL.ns.ZONE, LABEL.tunnel.ZONE
	region  string
	healthy bool         // Health "ok"; a draining edge takes no new visitors
	public  []netip.Addr // from PublicAddrs: A/AAAA of routed names and of LABEL.ns.ZONE
	// The tunnel address: an IP (tunnelIPs, answered at LABEL.tunnel.ZONE)
	// or a DNS name (tunnelHost, fully qualified), and its port.
	tunnelIPs  []netip.Addr
	tunnelHost string
	tunnelPort uint16
}

// edgeSet is a snapshot of the registry, never changed once built.
type edgeSet struct {
	all     []*edge // by name
	byLabel map[string][]*edge
	healthy []*edge // the edges that take visitors, by name
	// The name servers: the label of every edge with an address, sorted,
	// and the addresses of each (draining edges still answer DNS).
	nsLabels []string
	nsAddrs  map[string][]netip.Addr
}

// parseEdges builds a snapshot from the registry, skipping (and logging,
// once per change) what cannot be used.
func parseEdges(edges edgeview.Edges, log *slog.Logger) *edgeSet {
	set := &edgeSet{byLabel: make(map[string][]*edge), nsAddrs: make(map[string][]netip.Addr)}
	for name, n := range edges {
		if len(set.all) == maxEdges {
			log.Warn("more edges in the registry than DNS answers with; some are left out", "limit", maxEdges)
			break
		}
		if name == "" || strings.Contains(name, "/") {
			continue
		}
		e := &edge{name: name, label: edgeLabel(name), region: n.Region, healthy: n.Health == control.EdgeHealthOK}
		for _, a := range n.PublicAddrs {
			if ip, ok := addrIP(a); ok && !slices.Contains(e.public, ip) && len(e.public) < maxEdgeAddrs {
				e.public = append(e.public, ip)
			}
		}
		if host, port, err := net.SplitHostPort(n.TunnelAddr); err == nil {
			if p, err := strconv.ParseUint(port, 10, 16); err == nil && p > 0 {
				e.tunnelPort = uint16(p)
				if ip, ok := addrIP(host); ok {
					e.tunnelIPs = []netip.Addr{ip}
				} else if a, err := netip.ParseAddr(host); err == nil && a.IsUnspecified() {
					e.tunnelIPs = e.public // the edge listens on all its addresses
				} else if _, ok := dns.IsDomainName(host); ok && host != "" {
					e.tunnelHost = dns.Fqdn(strings.ToLower(host))
				}
			}
		}
		if len(e.public) == 0 {
			log.Warn("an edge registers no public IP address; DNS answers without it (give it --public-name with an IP)", "edge", name, "public_addrs", n.PublicAddrs)
		}
		set.all = append(set.all, e)
	}
	slices.SortFunc(set.all, func(a, b *edge) int { return strings.Compare(a.name, b.name) })
	for _, e := range set.all {
		set.byLabel[e.label] = append(set.byLabel[e.label], e)
		if e.healthy {
			set.healthy = append(set.healthy, e)
		}
		if len(e.public) > 0 {
			if _, ok := set.nsAddrs[e.label]; !ok {
				set.nsLabels = append(set.nsLabels, e.label)
			}
			set.nsAddrs[e.label] = append(set.nsAddrs[e.label], e.public...)
		}
	}
	slices.Sort(set.nsLabels)
	return set
}

// addrIP reads an address as the registry writes it ("192.0.2.1:443",
// "[2001:db8::1]:443" or a bare IP). Unspecified and zoned addresses are
// no use to a client.
func addrIP(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a, true
}

// edgeLabel makes a DNS label of a node name: the name itself when it is
// one (lower-case letters, digits, hyphens; at most 63 bytes), else its
// letters and digits with a short digest of the whole name, so two names
// do not meet on one label by chance.
func edgeLabel(name string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(name) {
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			b.WriteRune(c)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	label := strings.Trim(b.String(), "-")
	if label == name && len(label) <= 63 {
		return label
	}
	if len(label) > maxLabelBase {
		label = strings.TrimRight(label[:maxLabelBase], "-")
	}
	sum := sha256.Sum256([]byte(name))
	if label == "" {
		return "edge-" + hex.EncodeToString(sum[:4])
	}
	return label + "-" + hex.EncodeToString(sum[:4])
}
