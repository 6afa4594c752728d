package cli

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/control"
)

func newTailCmd(g *Env) *cobra.Command {
	var (
		api    apiFlags
		output string
		opts   control.TailOptions
	)
	cmd := &cobra.Command{
		Use:   "tail NAME|UUID",
		Short: "Stream the edge's live request log for a tunnel",
		Long: `Tail prints each public request the edge answers for the tunnel, as it
completes: time, status, method, host and path, duration and request ID (the ID
the client's error page and the connector's log show). Ctrl-C stops it.

  adit tail web
  adit tail web --status 5xx,404 --host app.example.com -o json

The edge behind --api (or cert.json) streams its own requests; in a fleet,
tail each edge. When this terminal falls behind, the edge drops lines rather
than slow requests down, and tail says how many.`,
		Args: ExactArgs(1, "a tunnel NAME or UUID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if _, err := control.ParseStatusFilter(opts.Statuses); err != nil {
				return fmt.Errorf("tail: --status: %w", err)
			}
			c, _, err := tokenClient(&api, g.Home) // admin.go
			if err != nil {
				return err
			}
			fmt.Fprintf(g.Stderr, "adit tail: streaming requests of tunnel %s (Ctrl-C to stop)\n", args[0])
			err = c.TailRequests(cmd.Context(), args[0], opts, func(l control.RequestLogLine) error {
				if l.Dropped > 0 {
					fmt.Fprintf(g.Stderr, "adit tail: %d request(s) dropped: this terminal fell behind\n", l.Dropped)
					return nil
				}
				if output == "json" {
					return writeJSONLine(g, l.RequestLogEntry)
				}
				e := l.RequestLogEntry
				_, err := fmt.Fprintf(g.Stdout, "%s %d %s %s%s %.1fms %s\n",
					e.Time.Format("2006-01-02T15:04:05.000Z07:00"), e.Status, e.Method, e.Host, e.Path, e.DurationMS, e.RequestID)
				return err
			})
			switch {
			case errors.Is(err, control.ErrNotFound):
				return fmt.Errorf("tail: no tunnel %q (see `adit tunnel list`)", args[0])
			case errors.Is(err, control.ErrInvalid):
				return fmt.Errorf("tail: %w", err)
			case err != nil && cmd.Context().Err() == nil:
				return fmt.Errorf("tail: %w", apiError(err))
			}
			return nil
		},
	}
	api.register(cmd)
	outputFlag(cmd, &output)
	cmd.Flags().StringSliceVar(&opts.Statuses, "status", nil, "only these statuses: codes (404) or classes (5xx), comma-separated")
	cmd.Flags().StringSliceVar(&opts.Hosts, "host", nil, "only these hostnames, comma-separated")
	return cmd
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(g *Env, v any) error {
	return json.NewEncoder(g.Stdout).Encode(v)
}
