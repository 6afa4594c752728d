package edgecmd

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/adit-dev/adit/edge"
)

// fleetFlags are the flags of an edge as one of a fleet that do not land
// in edge.Config directly.
type fleetFlags struct {
	joinTokenFile string
}

// addFleetFlags registers the flags of an edge as one of a fleet.
func addFleetFlags(fl *pflag.FlagSet, cfg *edge.Config, f *fleetFlags) {
	fl.StringVar(&cfg.Region, "region", "", "region label of this edge in the fleet (connectors and DNS prefer edges of their own region)")
	fl.DurationVar(&cfg.LeaseTTL, "lease-ttl", 0, "how long this edge's records outlive it if it dies (default 10s)")
	fl.StringVar(&cfg.JoinURL, "join", "", "join the fleet of the edge whose API is at this URL (https://host:port), on first start")
	fl.StringVar(&f.joinTokenFile, "join-token-file", "", "file holding the join token for --join (from `adit edge join-token create` on an edge of the fleet)")
	fl.StringVar(&cfg.EtcdPeerAddr, "etcd-peer-addr", "", "host:port where the embedded etcd takes the other edges' peer traffic (default: --api-addr's host, a port kept across restarts)")
}

// apply reads the join token file.
func (f fleetFlags) apply(cfg *edge.Config) error {
	switch {
	case cfg.JoinURL == "" && f.joinTokenFile == "":
		return nil
	case cfg.JoinURL == "":
		return errors.New("edge: --join-token-file needs --join")
	case f.joinTokenFile == "":
		return errors.New("edge: --join needs --join-token-file (the token never goes on the command line)")
	case len(cfg.EtcdEndpoints) > 0:
		return errors.New("edge: --join is for edges with an embedded etcd; edges on an external etcd share it already (--etcd-endpoints)")
	}
	b, err := os.ReadFile(f.joinTokenFile)
	if err != nil {
		return fmt.Errorf("edge: --join-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return fmt.Errorf("edge: --join-token-file: %s is empty", f.joinTokenFile)
	}
	cfg.JoinToken = tok
	return nil
}
