package edgecmd

import (
	"github.com/spf13/pflag"

	"github.com/adit-dev/adit/edge"
)

// addFleetFlags registers the flags of an edge as one of a fleet.
func addFleetFlags(fl *pflag.FlagSet, cfg *edge.Config) {
	fl.StringVar(&cfg.Region, "region", "", "region label of this edge in the fleet (connectors and DNS prefer edges of their own region)")
	fl.DurationVar(&cfg.LeaseTTL, "lease-ttl", 0, "how long this edge's records outlive it if it dies (default 10s)")
}
