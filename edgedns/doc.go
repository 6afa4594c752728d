// Package edgedns makes the edges of an adit fleet the authoritative DNS
// servers of the zones they serve (`adit edge --dns-addr :53 --dns-zone
// example.com`), so a routed hostname resolves to the edges that are up,
// built on miekg/dns. Every edge answers the same, from memory: the
// registry of live edges (store.EdgesPrefix, each record under its edge's
// lease), the routes (controlserver.State) and the TXT records of ACME
// challenges (store.DNSTXTPrefix) are watched from etcd.
//
// # What a zone holds
//
// For a zone ZONE (every name lower-cased; LABEL is an edge's node name
// made a DNS label, see below):
//
//	ZONE                    SOA (primary: the first edge's name server;
//	                        serial: the etcd revision), NS: LABEL.ns.ZONE
//	                        of every live edge, with glue
//	ROUTED NAME             A/AAAA of every edge taking visitors (health
//	                        "ok"; draining ones left out unless all are)
//	LABEL.ns.ZONE           A/AAAA of that edge's public addresses
//	_adit-tunnel._udp.ZONE  SRV: each edge's tunnel port (QUIC), target
//	_adit-tunnel._tcp.ZONE  LABEL.tunnel.ZONE (WebSocket, same port)
//	LABEL.tunnel.ZONE       A/AAAA of that edge's tunnel address
//	_acme-challenge.NAME    TXT of an ACME DNS-01 challenge (Provider)
//
// A ROUTED NAME is one `adit tunnel route dns` routed, exactly or by a
// wildcard ("*.dev.example.com" answers for every name below
// dev.example.com); deleting the route removes it. A name above a routed
// one exists with no records (NOERROR, no answer), so resolvers that
// minimise their questions find what lies below. Any other name in the
// zone is NXDOMAIN, with the SOA; a name in no served zone is REFUSED.
// ANY is answered with RFC 8482's single HINFO record.
//
// LABEL is the node name if it is a DNS label (letters, digits and
// hyphens, at most 63), else its letters and digits with a short digest
// of the name. Names under ns.ZONE and tunnel.ZONE that name an edge are
// the edges' own; do not route them.
//
// # Regions and EDNS Client Subnet
//
// A/AAAA answers list the edges nearest the client first: the client's
// subnet (the EDNS Client Subnet a resolver sends, RFC 7871, else the
// resolver's own address) is looked up in Config.ClientRegions, whose
// longest matching prefix gives the regions in order of nearness; edges
// of the first come first, then the second, then the rest. Equal edges
// take turns at the front. The answer's ECS scope is the matching
// prefix's length, so resolvers cache it for that subnet only. The SRV
// answers give nearer regions a lower priority number.
//
// # TTLs
//
// A, AAAA, SRV and TXT records live Config.TTL (30s): an edge whose
// registry record expires leaves every answer at once and resolvers'
// caches within the TTL. A name that does not exist is remembered
// Config.NegativeTTL (30s). SOA and NS live Config.ZoneTTL (5 minutes).
//
// # Hostile clients
//
// Each query costs one answer from memory. Malformed ones (more than one
// question, records in the answer or authority sections, a bad EDNS
// option) get one short FORMERR, other opcodes NOTIMP, unparseable
// headers nothing. UDP answers are at most 1232 bytes (or what the client
// offers, if less), truncated past that with TC set, and rate-limited per
// client network (Config.RateLimit); the UDP queries answered at once are
// bounded (Config.MaxUDPQueries: miekg/dns starts a goroutine per packet
// and bounds nothing itself), past that dropped; TCP connections are
// bounded (Config.MaxTCPConns) and time out when idle.
//
// # ACME DNS-01
//
// Provider (certmagic's DNSProvider, libdns types) writes a challenge's
// TXT record into etcd, where every edge answers it; Server.Solver wraps
// it in certmagic's DNS01Solver, checking against this server that the
// record is served. Package publictls uses it to order certificates for
// wildcard routes in the served zones.
package edgedns
