package store

// Prefix is the root of every key adit writes.
const Prefix = "/adit/"

// Key prefixes, one per record kind (see the package doc).
const (
	TunnelsPrefix     = Prefix + "tunnels/"
	TunnelNamesPrefix = Prefix + "tunnel-names/"
	RoutesPrefix      = Prefix + "routes/"
	TokensPrefix      = Prefix + "tokens/"
	ConnectionsPrefix = Prefix + "connections/"
)

// TunnelKey is the key of the tunnel record with that ID.
func TunnelKey(id string) string { return TunnelsPrefix + id }

// TunnelNameKey is the key that maps a live tunnel's name to its ID.
func TunnelNameKey(name string) string { return TunnelNamesPrefix + name }

// RouteKey is the key of the route for a (lower-case) hostname.
func RouteKey(hostname string) string { return RoutesPrefix + hostname }

// TokenKey is the key of an API token, given the hex sha256 of the token.
func TokenKey(hashHex string) string { return TokensPrefix + hashHex }

// TunnelConnectionsPrefix is the prefix of every connection key of one tunnel.
func TunnelConnectionsPrefix(tunnelID string) string { return ConnectionsPrefix + tunnelID + "/" }

// ConnectionKey is the key of one live connection of a tunnel.
func ConnectionKey(tunnelID, connID string) string { return TunnelConnectionsPrefix(tunnelID) + connID }
