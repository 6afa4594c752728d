package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/control"
)

// newTunnelRouteListCmd is `tunnel route list`: every hostname route with
// its tunnel's name.
func newTunnelRouteListCmd(g *Env) *cobra.Command {
	var (
		api    apiFlags
		output string
	)
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List hostname routes and the tunnels they go to",
		Args:    ExactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := api.client(g.Home)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			routes, err := c.ListRoutes(ctx)
			if err != nil {
				return fmt.Errorf("route list: %w", apiError(err))
			}
			var names map[string]string
			if output != "json" && len(routes) > 0 {
				if names, err = tunnelNames(ctx, c); err != nil {
					return fmt.Errorf("route list: %w", apiError(err))
				}
			}
			return printList(g.Stdout, output, routes, "No routes.", "HOSTNAME\tTUNNEL ID\tTUNNEL NAME\tCREATED",
				func(r control.Route) []any {
					return []any{r.Hostname, r.TunnelID, orDash(names[r.TunnelID]), formatTime(r.CreatedAt)}
				})
		},
	}
	api.register(cmd)
	outputFlag(cmd, &output)
	return cmd
}

// tunnelNames maps the IDs of live tunnels to their names.
func tunnelNames(ctx context.Context, c control.API) (map[string]string, error) {
	ts, err := c.ListTunnels(ctx, control.ListOptions{})
	if err != nil {
		return nil, err
	}
	names := make(map[string]string, len(ts))
	for _, t := range ts {
		names[t.ID] = t.Name
	}
	return names, nil
}

// newTunnelRouteDeleteCmd is `tunnel route delete HOSTNAME`.
func newTunnelRouteDeleteCmd(g *Env) *cobra.Command {
	var api apiFlags
	cmd := &cobra.Command{
		Use:     "delete HOSTNAME",
		Aliases: []string{"rm"},
		Short:   "Remove a hostname route",
		Args:    ExactArgs(1, "a HOSTNAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := api.client(g.Home)
			if err != nil {
				return err
			}
			host, err := control.ValidateHostname(args[0])
			if err != nil {
				return fmt.Errorf("route delete: %w", err)
			}
			err = c.DeleteRoute(cmd.Context(), host)
			switch {
			case errors.Is(err, control.ErrNotFound):
				return fmt.Errorf("route delete: no route for %s (see `adit tunnel route list`)", host)
			case err != nil:
				return fmt.Errorf("route delete: %w", apiError(err))
			}
			fmt.Fprintf(g.Stdout, "Removed route %s\n", host)
			return nil
		},
	}
	api.register(cmd)
	return cmd
}

// tunnelHostnames are the hostnames routed to a tunnel, sorted.
func tunnelHostnames(ctx context.Context, c control.API, tunnelID string) ([]string, error) {
	routes, err := c.ListRoutes(ctx)
	if err != nil {
		return nil, err
	}
	var hosts []string
	for _, r := range routes {
		if r.TunnelID == tunnelID {
			hosts = append(hosts, r.Hostname)
		}
	}
	slices.Sort(hosts)
	return hosts, nil
}
