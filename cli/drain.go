package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/control"
)

func newEdgeDrainCmd(g *Env) *cobra.Command {
	var api apiFlags
	cmd := &cobra.Command{
		Use:   "drain NODE",
		Short: "Drain a live edge: it moves its visitors and connectors to the other edges, then exits",
		Long: `Ask the edge named NODE (adit edge list) to drain and leave, as SIGTERM does: it
marks itself draining in the fleet's registry and answers /ready with 503,
refuses new connectors, keeps serving visitors for its --drain-delay while
load balancers and DNS move them, stops taking visitors, finishes the
requests in flight, has its connectors move to other edges, and exits. Any
edge's API takes the request. For a rolling upgrade, drain one edge at a
time and start it again on the new version.`,
		Args: ExactArgs(1, "the NODE to drain"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := api.client(g.Home)
			if err != nil {
				return err
			}
			e, err := c.DrainEdge(cmd.Context(), args[0])
			if errors.Is(err, control.ErrNotFound) {
				return fmt.Errorf("edge drain: no live edge named %q (adit edge list)", args[0])
			}
			if err != nil {
				return fmt.Errorf("edge drain: %w", apiError(err))
			}
			fmt.Fprintf(g.Stdout, "Edge %s is draining; it exits when its visitors and connectors have moved.\n", e.Name)
			return nil
		},
	}
	api.register(cmd)
	return cmd
}
