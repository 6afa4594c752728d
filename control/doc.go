// Package control is the contract of adit's control plane: the model
// (tunnels, routes, TCP routes, connections, edge info), the [API] interface
// over it, its errors, the JSON bodies of the /v1 HTTP API
// (docs/openapi.yaml) and [Client], the typed HTTPS client that implements
// API. It imports nothing of etcd, so the connector and the admin commands
// can use it without linking an etcd server.
//
// Package controlserver implements API over etcd ([controlserver.Service]),
// serves it over HTTP and feeds the edge's request path.
//
// Rules of the model (the Validate functions here; the service enforces
// them):
//   - tunnel names are 1-64 characters of [A-Za-z0-9._-], not "." or "..",
//     not shaped like a UUID, and unique among live tunnels;
//   - tunnel secrets are at least 32 bytes and only their sha256 is stored;
//   - hostnames are lower-cased DNS names ("app.example.com"), optionally a
//     wildcard ("*.example.com" matches any name below example.com, not
//     example.com itself); the most specific route wins;
//   - deleting a tunnel is soft: it keeps its record with DeletedAt set, frees
//     its name and removes its routes in the same transaction.
//   - a public TCP port (1-65535) is routed to one live tunnel, with an
//     optional hostname (never a wildcard) its connector's ingress rules
//     see; deleting the tunnel removes its TCP routes right after.
package control
