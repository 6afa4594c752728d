package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/credentials"
	"github.com/adit-dev/adit/internal/pki"
)

func newAdminCmd(g *Env) *cobra.Command {
	admin := &cobra.Command{
		Use:   "admin",
		Short: "Administer the edges' control API",
		Args:  noArgsGroup,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	token := &cobra.Command{
		Use:   "token",
		Short: "Rotate, list and revoke API tokens",
		Long: `API tokens let 'adit login' and the admin verbs use an edge's control API.
Only their sha256 is stored (in etcd, shared by every edge), and every edge
checks a token there on every request, so a rotation or revocation applies on
every edge at once. A revoked token stays revoked: an edge that starts with it
in its admin.token file does not bring it back, and an edge that starts with
another token in that file revokes the ones it registered before.`,
		Args: noArgsGroup,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	token.AddCommand(newTokenRotateCmd(g), newTokenListCmd(g), newTokenRevokeCmd(g))
	admin.AddCommand(token)
	return admin
}

// tokenClient is the API client of the flags, with the login it came from.
func tokenClient(f *apiFlags, home string) (*control.Client, *credentials.Login, error) {
	l, err := f.login(home)
	if err != nil {
		return nil, nil, err
	}
	c, err := control.NewClient(l.API, l.Token, []byte(l.CAPEM))
	if err != nil {
		return nil, nil, err
	}
	return c, l, nil
}

func newTokenRotateCmd(g *Env) *cobra.Command {
	var (
		api    apiFlags
		name   string
		write  string
		output string
	)
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new admin token and revoke the old ones on every edge",
		Long: `Rotate makes a new API token named --name (default admin) and, in the same
transaction, revokes every live token of that name: the edges' admin.token
tokens and earlier rotations. The new token is printed on stdout, or written
to --write FILE (mode 0600). If cert.json (from 'adit login') held a token
that was revoked, it is updated to the new one.`,
		Args: ExactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if write != "" {
				if _, err := os.Stat(filepath.Dir(write)); err != nil {
					return fmt.Errorf("token rotate: --write: %w", err)
				}
			}
			c, l, err := tokenClient(&api, g.Home)
			if err != nil {
				return err
			}
			resp, err := c.RotateToken(cmd.Context(), name)
			if err != nil {
				return fmt.Errorf("token rotate: %w", apiError(err))
			}
			if write != "" {
				if err := pki.WriteFileAtomic(write, []byte(resp.Token+"\n"), 0o600); err != nil {
					// The old tokens are revoked: the new one must not be lost.
					fmt.Fprintln(g.Stdout, resp.Token)
					return fmt.Errorf("token rotate: --write: %w (the new token is printed above; the old ones are revoked)", err)
				}
			}
			updated, err := updateLogin(g.Home, l, resp)
			if err != nil {
				fmt.Fprintf(g.Stderr, "adit: token rotate: cert.json holds a revoked token and updating it failed: %v\n", err)
			}
			if output == "json" {
				if write != "" {
					resp.Token = ""
				}
				return writeJSON(g.Stdout, resp)
			}
			if write == "" {
				fmt.Fprintln(g.Stdout, resp.Token)
			} else {
				fmt.Fprintf(g.Stderr, "New %s token %s written to %s (mode 0600).\n", resp.Info.Name, resp.Info.ID, write)
			}
			for _, t := range resp.Revoked {
				from := "the API"
				if t.Edge != "" {
					from = "edge " + t.Edge + "'s admin.token"
				}
				fmt.Fprintf(g.Stderr, "Revoked token %s (from %s, created %s).\n", t.ID, from, formatTime(t.CreatedAt))
			}
			if updated {
				fmt.Fprintf(g.Stderr, "Updated %s with the new token.\n", filepath.Join(g.Home, credentials.LoginFile))
			}
			return nil
		},
	}
	api.register(cmd)
	outputFlag(cmd, &output)
	cmd.Flags().StringVar(&name, "name", control.DefaultTokenName, "name of the tokens to replace")
	cmd.Flags().StringVar(&write, "write", "", "write the new token to this file (mode 0600) instead of printing it")
	return cmd
}

// updateLogin replaces the token in cert.json with the rotated one if the
// command used cert.json's API and its token was just revoked.
func updateLogin(home string, used *credentials.Login, resp control.RotateTokenResponse) (bool, error) {
	saved, err := credentials.LoadLogin(home)
	if err != nil || saved.API != used.API {
		return false, nil
	}
	id := control.TokenID(saved.Token)
	for _, t := range resp.Revoked {
		if t.ID == id {
			saved.Token = resp.Token
			return true, saved.Save(home)
		}
	}
	return false, nil
}

func newTokenListCmd(g *Env) *cobra.Command {
	var (
		api         apiFlags
		output      string
		showRevoked bool
	)
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List API tokens (never the tokens themselves); * marks the one in use",
		Args:    ExactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, l, err := tokenClient(&api, g.Home)
			if err != nil {
				return err
			}
			ts, err := c.ListTokens(cmd.Context(), showRevoked)
			if err != nil {
				return fmt.Errorf("token list: %w", apiError(err))
			}
			if output == "json" {
				return writeJSON(g.Stdout, ts)
			}
			own := control.TokenID(l.Token)
			w := tabwriter.NewWriter(g.Stdout, 0, 0, 3, ' ', 0)
			header := "ID\tNAME\tFROM\tCREATED"
			if showRevoked {
				header += "\tREVOKED"
			}
			fmt.Fprintln(w, header)
			for _, t := range ts {
				id := t.ID
				if id == own {
					id += " *"
				}
				from := "api"
				if t.Edge != "" {
					from = "edge " + t.Edge
				}
				line := fmt.Sprintf("%s\t%s\t%s\t%s", id, t.Name, from, formatTime(t.CreatedAt))
				if showRevoked {
					revoked := "-"
					if t.RevokedAt != nil {
						revoked = formatTime(*t.RevokedAt)
					}
					line += "\t" + revoked
				}
				fmt.Fprintln(w, line)
			}
			return w.Flush()
		},
	}
	api.register(cmd)
	outputFlag(cmd, &output)
	cmd.Flags().BoolVar(&showRevoked, "show-revoked", false, "include revoked tokens")
	return cmd
}

func newTokenRevokeCmd(g *Env) *cobra.Command {
	var api apiFlags
	cmd := &cobra.Command{
		Use:   "revoke ID...",
		Short: "Revoke API tokens by ID (see 'adit admin token list'); they stop working on every edge",
		Args:  minArgs(1, "at least one token ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := tokenClient(&api, g.Home)
			if err != nil {
				return err
			}
			for _, id := range args {
				err := c.RevokeToken(cmd.Context(), id)
				switch {
				case errors.Is(err, control.ErrNotFound):
					return fmt.Errorf("token revoke: no token with ID %s (see `adit admin token list`)", id)
				case errors.Is(err, control.ErrConflict), errors.Is(err, control.ErrInvalid):
					return fmt.Errorf("token revoke: %w", err)
				case err != nil:
					return fmt.Errorf("token revoke: %w", apiError(err))
				}
				fmt.Fprintf(g.Stdout, "Revoked token %s\n", id)
			}
			return nil
		},
	}
	api.register(cmd)
	return cmd
}
