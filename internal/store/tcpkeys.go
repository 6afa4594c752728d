package store

import "strconv"

// TCPRoutesPrefix is the prefix of every public TCP port route.
const TCPRoutesPrefix = Prefix + "tcp-routes/"

// TCPRouteKey is the key of the route for a public TCP port of the edges.
func TCPRouteKey(port int) string { return TCPRoutesPrefix + strconv.Itoa(port) }
