package cli

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/control"
)

func newTunnelRouteTCPCmd(g *Env) *cobra.Command {
	var (
		api       apiFlags
		overwrite bool
		del       bool
		list      bool
		output    string
	)
	cmd := &cobra.Command{
		Use:   "tcp NAME|UUID PORT [HOSTNAME]",
		Short: "Route a public TCP port of the edges to a tunnel",
		Long: `Make every edge listen on PORT (on the host of its --http-addr) and carry each
connection to the tunnel as a TCP stream for HOSTNAME, so the connector's
ingress rules choose the origin (without HOSTNAME, its catch-all rule).

  adit tunnel route tcp web 2222 ssh.example.com
  adit tunnel route tcp --list
  adit tunnel route tcp --delete 2222`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case list && del:
				return fmt.Errorf("%s: --list and --delete do not go together", cmdPath(cmd))
			case list && len(args) != 0:
				return fmt.Errorf("%s --list: want no arguments, got %d", cmdPath(cmd), len(args))
			case del && len(args) != 1:
				return fmt.Errorf("%s --delete: want a PORT, got %d argument(s)", cmdPath(cmd), len(args))
			case !list && !del && (len(args) < 2 || len(args) > 3):
				return fmt.Errorf("%s: want a tunnel NAME or UUID, a PORT and optionally a HOSTNAME, got %d argument(s)", cmdPath(cmd), len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := api.client(g.Home)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			switch {
			case list:
				routes, err := c.ListTCPRoutes(ctx)
				if err != nil {
					return fmt.Errorf("route tcp: %w", apiError(err))
				}
				return printList(g.Stdout, output, routes, "No tcp routes.", "PORT\tTUNNEL ID\tHOSTNAME\tCREATED",
					func(r control.TCPRoute) []any {
						host := r.Hostname
						if host == "" {
							host = "(catch-all)"
						}
						return []any{r.Port, r.TunnelID, host, formatTime(r.CreatedAt)}
					})
			case del:
				port, err := parsePort(args[0])
				if err != nil {
					return fmt.Errorf("route tcp --delete: %w", err)
				}
				err = c.DeleteTCPRoute(ctx, port)
				switch {
				case errors.Is(err, control.ErrNotFound):
					return fmt.Errorf("route tcp --delete: no tcp route for port %d (see `adit tunnel route tcp --list`)", port)
				case err != nil:
					return fmt.Errorf("route tcp --delete: %w", apiError(err))
				}
				fmt.Fprintf(g.Stdout, "Removed tcp route for port %d\n", port)
				return nil
			}
			port, err := parsePort(args[1])
			if err != nil {
				return fmt.Errorf("route tcp: %w", err)
			}
			hostname := ""
			if len(args) == 3 {
				hostname = args[2]
			}
			t, err := getTunnel(ctx, c, args[0])
			if err != nil {
				return fmt.Errorf("route tcp: %w", err)
			}
			r, err := c.RouteTCP(ctx, t.ID, port, hostname, overwrite)
			switch {
			case errors.Is(err, control.ErrConflict):
				return fmt.Errorf("route tcp: port %d is already routed elsewhere; use --overwrite to replace it", port)
			case errors.Is(err, control.ErrInvalid):
				return fmt.Errorf("route tcp: %w", err)
			case err != nil:
				return fmt.Errorf("route tcp: %w", apiError(err))
			}
			if output == "json" {
				return writeJSON(g.Stdout, r)
			}
			host := r.Hostname
			if host == "" {
				host = "its catch-all rule"
			}
			fmt.Fprintf(g.Stdout, "Added tcp route: port %d → tunnel %s (%s)\n", r.Port, t.ID, host)
			return nil
		},
	}
	api.register(cmd)
	outputFlag(cmd, &output)
	cmd.Flags().BoolVarP(&overwrite, "overwrite", "f", false, "replace the port's route if it goes elsewhere")
	cmd.Flags().BoolVar(&del, "delete", false, "remove the route of PORT")
	cmd.Flags().BoolVar(&list, "list", false, "list the tcp routes")
	return cmd
}

// parsePort parses a TCP port number, 1 to 65535.
func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return p, nil
}
