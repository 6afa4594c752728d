package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/internal/metrics"
)

func newTunnelReadyCmd(g *Env) *cobra.Command {
	var (
		addr    string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ready --metrics HOST:PORT",
		Short: "Exit 0 if the connector whose --metrics address is given is ready to serve",
		Long: `Ready asks the /ready endpoint of a running 'adit tunnel run --metrics HOST:PORT'
(or 'adit edge --metrics'): it exits 0 when at least one connection to the
edge is registered, else 1 with a one-line reason. Use it as a container
health check:

  HEALTHCHECK CMD adit tunnel ready --metrics 127.0.0.1:20241`,
		Args: ExactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if addr == "" {
				return fmt.Errorf("tunnel ready: pass --metrics HOST:PORT, the address given to 'tunnel run --metrics'")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			rd, err := metrics.Check(ctx, addr)
			if err != nil {
				return fmt.Errorf("tunnel ready: %w", err)
			}
			fmt.Fprintf(g.Stdout, "ready: %d registered connections\n", rd.ReadyConnections)
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "metrics", "", "metrics address of the connector (host:port)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "give up after this long")
	return cmd
}
