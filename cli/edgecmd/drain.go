package edgecmd

import (
	"github.com/spf13/pflag"

	"github.com/adit-dev/adit/edge"
)

// addDrainFlags registers how the edge drains on SIGTERM or `adit edge
// drain` (package edge, drain.go).
func addDrainFlags(fl *pflag.FlagSet, cfg *edge.Config) {
	fl.DurationVar(&cfg.DrainDelay, "drain-delay", edge.DefaultDrainDelay, "when draining, how long to keep serving visitors after /ready turns 503, while load balancers and DNS move them (skipped when no other edge is live)")
	fl.DurationVar(&cfg.DrainTimeout, "drain-timeout", edge.DefaultDrainTimeout, "when draining, how long requests in flight and connectors moving away may take once visitors are no longer taken")
}
