package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// newAccessAppRevokeCmd is `adit access app revoke-sessions NAME [--email
// E]`: Cloudflare's "revoke existing tokens", server-side.
func newAccessAppRevokeCmd(g *Env) *cobra.Command {
	var (
		api   apiFlags
		email string
	)
	cmd := &cobra.Command{
		Use:   "revoke-sessions NAME [--email ADDRESS]",
		Short: "Revoke an application's sessions (or one person's): they log in again",
		Long: `Revoke the sessions of an application issued until now, or with --email only that
person's. Every edge refuses them within a second (and after a restart); the
people log in again (and pass the policies again). To end one's own session,
visit /.adit/logout on the application's hostname.`,
		Args: ExactArgs(1, "an application NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := api.apiClient(g.Home)
			if err != nil {
				return err
			}
			out, err := c.RevokeAccessSessions(cmd.Context(), args[0], email)
			if err != nil {
				return fmt.Errorf("access app revoke-sessions: %w", apiError(err))
			}
			who := "every session"
			if out.Email != "" {
				who = "the sessions of " + out.Email
			}
			fmt.Fprintf(g.Stdout, "Revoked %s of %s issued before %s\n", who, out.App, out.IssuedBefore.Format("2006-01-02 15:04:05 MST"))
			return nil
		},
	}
	api.register(cmd)
	cmd.Flags().StringVar(&email, "email", "", "revoke only this person's sessions")
	return cmd
}
