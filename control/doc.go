// Package control is adit's control plane: the model (tunnels, routes,
// connections, API tokens), the [Service] that keeps it in etcd, the /v1 HTTP
// API over that service ([NewHandler]) and its typed [Client], both behind the
// [API] interface.
//
// It also feeds the edge's request path, which must never wait on etcd:
// [State] holds tunnels, routes and connections in memory and keeps them
// current with a watch, and [Presence] publishes the connections an edge
// holds under one lease, so they vanish if the edge dies.
//
// The etcd keys are described in package store.
//
// Rules the service enforces:
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
//     see; deleting the tunnel removes its TCP routes right after
//     (tcproute.go).
package control
