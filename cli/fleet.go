package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/control"
)

// FleetCommands are the subcommands of `adit edge` that administer the
// fleet of edges through the control API: list, members, leave,
// join-token. Package edgecmd adds them under `edge`; they need no edge in
// the process.
func FleetCommands(g *Env) []*cobra.Command {
	return []*cobra.Command{newEdgeListCmd(g)}
}

func newEdgeListCmd(g *Env) *cobra.Command {
	var (
		api    apiFlags
		output string
	)
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the live edges of the fleet",
		Long: `List the edges that are alive: each one keeps a record in the shared etcd under
its lease, so an edge that dies leaves this list within the lease's TTL (10s).
A draining edge is finishing what it serves and takes nothing new.`,
		Args: ExactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := api.client(g.Home)
			if err != nil {
				return err
			}
			edges, err := c.ListEdges(cmd.Context())
			if err != nil {
				return fmt.Errorf("edge list: %w", apiError(err))
			}
			if output == "json" {
				if edges == nil {
					edges = []control.EdgeNode{}
				}
				return writeJSON(g.Stdout, edges)
			}
			if len(edges) == 0 {
				fmt.Fprintln(g.Stdout, "No live edges.")
				return nil
			}
			w := tabwriter.NewWriter(g.Stdout, 0, 0, 3, ' ', 0)
			fmt.Fprintln(w, "NAME\tREGION\tPUBLIC\tTUNNEL\tAPI\tVERSION\tHEALTH\tSINCE")
			for _, e := range edges {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, orDash(e.Region), orDash(strings.Join(e.PublicAddrs, ",")),
					orDash(e.TunnelAddr), orDash(e.APIAddr), orDash(e.Version), e.Health, formatTime(e.Started))
			}
			return w.Flush()
		},
	}
	api.register(cmd)
	outputFlag(cmd, &output)
	return cmd
}
