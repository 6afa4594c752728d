package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/control"
)

// FleetCommands are the subcommands of `adit edge` that administer the
// fleet of edges through the control API: list, members, leave,
// join-token. Package edgecmd adds them under `edge`; they need no edge in
// the process.
func FleetCommands(g *Env) []*cobra.Command {
	return []*cobra.Command{newEdgeListCmd(g), newEdgeMembersCmd(g), newEdgeLeaveCmd(g), newJoinTokenCmd(g),
		newEdgeDrainCmd(g)} // drain.go
}

func newEdgeListCmd(g *Env) *cobra.Command {
	return listCmd(g, &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the live edges of the fleet",
		Long: `List the edges that are alive: each one keeps a record in the shared etcd under
its lease, so an edge that dies leaves this list within the lease's TTL (10s).
A draining edge is finishing what it serves and takes nothing new.`,
		Args: ExactArgs(0, "no arguments"),
	}, func(ctx context.Context, c *control.Client, _ []string) ([]control.EdgeNode, error) {
		return c.ListEdges(ctx)
	}, listing[control.EdgeNode]{"No live edges.", "NAME\tREGION\tPUBLIC\tTUNNEL\tAPI\tVERSION\tHEALTH\tSINCE",
		func(e control.EdgeNode) []any {
			return []any{e.Name, orDash(e.Region), orDash(strings.Join(e.PublicAddrs, ",")),
				orDash(e.TunnelAddr), orDash(e.APIAddr), orDash(e.Version), e.Health, formatTime(e.Started)}
		}})
}

func newEdgeMembersCmd(g *Env) *cobra.Command {
	return listCmd(g, &cobra.Command{
		Use:   "members",
		Short: "List the members of the fleet's embedded etcd cluster",
		Long: `List the etcd members of the fleet: one per edge that joined, alive or not.
A learner is an edge that joined and is catching up; it votes once promoted.
A dead edge stays a member until it is removed with 'adit edge leave NAME'.`,
		Args: ExactArgs(0, "no arguments"),
	}, func(ctx context.Context, c *control.Client, _ []string) ([]control.EdgeMember, error) {
		return c.ListEdgeMembers(ctx)
	}, listing[control.EdgeMember]{"No members.", "NAME\tID\tPEER URLS\tROLE", func(m control.EdgeMember) []any {
		role := "voter"
		if m.Learner {
			role = "learner"
		}
		name := m.Name
		if name == "" {
			name = "(not started)"
		}
		return []any{name, m.ID, strings.Join(m.PeerURLs, ","), role}
	}})
}

func newEdgeLeaveCmd(g *Env) *cobra.Command {
	var api apiFlags
	cmd := &cobra.Command{
		Use:   "leave [NAME]",
		Short: "Remove an edge from the fleet's etcd cluster",
		Long: `Without NAME, the edge whose API this talks to leaves the fleet: it stops
serving, removes its etcd member, deletes its etcd data and exits.
With NAME, removes the member of a dead edge (a live one is refused: make it
leave through its own API). Three edges survive the loss of one; remove a
dead one so that the next loss is survived too.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return fmt.Errorf("%s: want at most a NAME, got %d arguments", cmdPath(cmd), len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := api.apiClient(g.Home)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			info, err := c.EdgeInfo(ctx)
			if err != nil {
				return fmt.Errorf("edge leave: %w", apiError(err))
			}
			name := info.Node
			if len(args) == 1 {
				name = args[0]
			}
			err = c.RemoveEdgeMember(ctx, name)
			switch {
			case errors.Is(err, control.ErrNotFound):
				return fmt.Errorf("edge leave: no member %q (see `adit edge members`)", name)
			case err != nil:
				return fmt.Errorf("edge leave: %w", apiError(err))
			}
			if name == info.Node {
				fmt.Fprintf(g.Stdout, "Edge %s is leaving the fleet: it stops once its member is removed.\n", name)
			} else {
				fmt.Fprintf(g.Stdout, "Removed member %s from the fleet.\n", name)
			}
			return nil
		},
	}
	api.register(cmd)
	return cmd
}

func newJoinTokenCmd(g *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "join-token",
		Short: "Make, list and revoke the tokens new edges join the fleet with",
		Args:  noArgsGroup,
	}
	cmd.AddCommand(newJoinTokenCreateCmd(g), newJoinTokenListCmd(g), newJoinTokenRevokeCmd(g))
	return cmd
}

func newJoinTokenCreateCmd(g *Env) *cobra.Command {
	var (
		api         apiFlags
		ttl         time.Duration
		description string
		output      string
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Make a join token (printed once)",
		Long: `Make a token a new edge joins the fleet with. It is printed once; the edges
keep only its hash. Put it in a file (mode 0600) on the new edge and start it:

  adit edge --join https://THIS-EDGE-API --join-token-file FILE ...

The token pins this fleet's CA, so the new edge sends it to no other server.
It works for --ttl (0: until revoked) and for any number of joins.`,
		Args: ExactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if ttl < 0 || ttl%time.Second != 0 {
				return fmt.Errorf("edge join-token create: --ttl %v: want whole seconds, 0 or more", ttl)
			}
			c, err := api.apiClient(g.Home)
			if err != nil {
				return err
			}
			resp, err := c.CreateJoinToken(cmd.Context(), control.CreateJoinTokenRequest{Description: description, TTL: control.Seconds(ttl / time.Second)})
			if err != nil {
				return fmt.Errorf("edge join-token create: %w", apiError(err))
			}
			if output == "json" {
				return writeJSON(g.Stdout, resp)
			}
			fmt.Fprintln(g.Stdout, resp.Token)
			exp := "until revoked"
			if resp.ExpiresAt != nil {
				exp = "until " + formatTime(*resp.ExpiresAt)
			}
			fmt.Fprintf(g.Stderr, "Join token %s works %s; it is not shown again.\n", resp.ID, exp)
			return nil
		},
	}
	api.register(cmd)
	outputFlag(cmd, &output)
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token works (0: until revoked)")
	cmd.Flags().StringVar(&description, "description", "", "what the token is for")
	return cmd
}

func newJoinTokenListCmd(g *Env) *cobra.Command {
	return listCmd(g, &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the join tokens that work (never the tokens themselves)",
		Args:    ExactArgs(0, "no arguments"),
	}, func(ctx context.Context, c *control.Client, _ []string) ([]control.JoinToken, error) {
		return c.ListJoinTokens(ctx)
	}, listing[control.JoinToken]{"No join tokens.", "ID\tCREATED\tEXPIRES\tDESCRIPTION", func(t control.JoinToken) []any {
		exp := "never"
		if t.ExpiresAt != nil {
			exp = formatTime(*t.ExpiresAt)
		}
		return []any{t.ID, formatTime(t.CreatedAt), exp, orDash(t.Description)}
	}})
}

func newJoinTokenRevokeCmd(g *Env) *cobra.Command {
	return recordCmd(g, &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a join token: no edge joins with it any more",
		Args:  ExactArgs(1, "a join token ID"),
	}, (*control.Client).RevokeJoinToken, "Revoked join token %s")
}
