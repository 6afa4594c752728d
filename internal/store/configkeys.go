package store

import "fmt"

// A tunnel's remote configuration: every version kept (up to a bound) under
// its history prefix, and a copy of the newest under the latest prefix, which
// edges watch.
const (
	TunnelConfigLatestPrefix  = Prefix + "tunnel-config-latest/"
	TunnelConfigHistoryPrefix = Prefix + "tunnel-config-history/"
)

// TunnelConfigLatestKey is the key of a tunnel's newest configuration.
func TunnelConfigLatestKey(tunnelID string) string { return TunnelConfigLatestPrefix + tunnelID }

// TunnelConfigHistoryKeys is the prefix of a tunnel's configuration versions.
func TunnelConfigHistoryKeys(tunnelID string) string {
	return TunnelConfigHistoryPrefix + tunnelID + "/"
}

// TunnelConfigVersionKey is the key of one version of a tunnel's
// configuration; versions sort in key order.
func TunnelConfigVersionKey(tunnelID string, version int64) string {
	return fmt.Sprintf("%s%020d", TunnelConfigHistoryKeys(tunnelID), version)
}
