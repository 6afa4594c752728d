// Package store runs and connects to etcd, the database behind adit's control plane.
//
// By default an etcd server is embedded in the edge process ([Open] with no
// Endpoints): its data lives under DataDir/etcd, it listens only on a unix
// socket inside that directory (mode 0700), so nothing outside this machine,
// and no other user on it, can reach it. A fleet of edges shares an external
// etcd cluster instead ([Config.Endpoints]); after [Open] both are used through
// the same *clientv3.Client.
//
// # Keys
//
// Everything adit stores lives under [Prefix] ("/adit/"):
//
//	/adit/tunnels/<id>                      JSON tunnel record (ID, name, sha256 of the secret, created, deleted)
//	/adit/tunnel-names/<name>               the ID of the live tunnel with that name (absent once deleted)
//	/adit/routes/<hostname>                 JSON route {hostname, tunnel_id, created_at}; hostname lower-case,
//	                                        exact ("app.example.com") or wildcard ("*.example.com")
//	/adit/tokens/<sha256 hex of the token>  JSON {name, edge, created_at, revoked_at}; API tokens are never stored
//	                                        in clear; a revoked token keeps its record so no edge registers it again
//	/adit/connections/<tunnelID>/<connID>   JSON live tunnel connection, attached to the lease of the edge
//	                                        that holds it, so a dead edge's connections vanish with its lease
//	/adit/tcp-routes/<port>                 JSON public TCP port route {port, tunnel_id, hostname, created_at}:
//	                                        every edge listens on that port and carries its connections to the tunnel
//	/adit/ip-rules/<id>                     JSON control.IPRule (hostname or "*", allow|deny, cidr, note)
//	/adit/rate-limits/<id>                  JSON control.RateLimit
//	/adit/waf/<hostname>                    JSON control.WAFConfig of a hostname, or of "*" (every other one)
//	/adit/dns/txt/<fqdn>/<id>               JSON TXT record the edges' DNS servers answer (ACME DNS-01), under a lease
//	/adit/sessions/<sha256 hex of a cookie> JSON dashboard session {token_hash, created_at, expires_at} under a
//	                                        lease of its lifetime; its API token's revocation ends it
//
// The functions below build these keys; package control gives them meaning.
package store
