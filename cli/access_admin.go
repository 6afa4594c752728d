package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/control"
)

// The administration of Access: `adit access idp|app|policy|token`, over
// the edge's /v1/access API.

func newAccessIdPCmd(g *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "idp",
		Short: "Manage the identity providers people log in with (any OpenID Connect provider)",
		Args:  noArgsGroup,
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	var (
		api        apiFlags
		p          control.AccessIdP
		secretFile string
		scopes     []string
	)
	addCmd := &cobra.Command{
		Use:   "add NAME --issuer URL --client-id ID --client-secret-file FILE [--scopes openid,email,profile] [--groups-claim groups]",
		Short: "Add an OpenID Connect identity provider (Keycloak, Dex, Google, Entra ID, Authentik...)",
		Long: `Add an identity provider, found by OpenID Connect discovery at its issuer URL.
Register adit at the provider as a confidential web client whose redirect URI is
https://HOSTNAME/.adit/callback for every hostname of an Access application.
The client secret is read from a file (never a command-line argument).`,
		Args: ExactArgs(1, "an identity provider NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p.Name = args[0]
			if p.Issuer == "" || p.ClientID == "" {
				return errors.New("access idp add: --issuer and --client-id are required")
			}
			if secretFile != "" {
				b, err := os.ReadFile(secretFile)
				if err != nil {
					return fmt.Errorf("access idp add: --client-secret-file: %w", err)
				}
				p.ClientSecret = strings.TrimSpace(string(b))
				if p.ClientSecret == "" {
					return fmt.Errorf("access idp add: --client-secret-file: %s is empty", secretFile)
				}
			}
			p.Scopes = scopes
			if err := p.Validate(); err != nil {
				return fmt.Errorf("access idp add: %w", err)
			}
			c, err := api.apiClient(g.Home)
			if err != nil {
				return err
			}
			out, err := c.AddAccessIdP(cmd.Context(), p)
			if err != nil {
				return fmt.Errorf("access idp add: %w", apiError(err))
			}
			fmt.Fprintf(g.Stdout, "Added identity provider %s (%s)\n", out.Name, out.Issuer)
			return nil
		},
	}
	api.register(addCmd)
	addCmd.Flags().StringVar(&p.Issuer, "issuer", "", "the provider's issuer URL (its discovery document is under it)")
	addCmd.Flags().StringVar(&p.ClientID, "client-id", "", "adit's client ID at the provider")
	addCmd.Flags().StringVar(&secretFile, "client-secret-file", "", "file holding adit's client secret at the provider")
	addCmd.Flags().StringSliceVar(&scopes, "scopes", nil, "scopes to ask for (default openid,email,profile)")
	addCmd.Flags().StringVar(&p.GroupsClaim, "groups-claim", "", "the claim holding the user's groups (default groups)")

	listCmd := listCmd(g, &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the identity providers",
		Args:    ExactArgs(0, "no arguments"),
	}, func(ctx context.Context, c *control.Client, _ []string) ([]control.AccessIdP, error) {
		return c.ListAccessIdPs(ctx)
	}, listing[control.AccessIdP]{"No identity providers.", "NAME\tISSUER\tCLIENT ID\tSCOPES\tCREATED",
		func(p control.AccessIdP) []any {
			sc := strings.Join(p.Scopes, ",")
			if sc == "" {
				sc = "(default)"
			}
			return []any{p.Name, p.Issuer, p.ClientID, sc, formatTime(p.CreatedAt)}
		}})
	deleteCmd := recordCmd(g, &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an identity provider no application uses",
		Args:  ExactArgs(1, "an identity provider NAME"),
	}, (*control.Client).DeleteAccessIdP, "Deleted identity provider %s")
	cmd.AddCommand(addCmd, listCmd, deleteCmd)
	return cmd
}

func newAccessAppCmd(g *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "app",
		Short: "Manage Access applications: who may reach a hostname (and path)",
		Args:  noArgsGroup,
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	var (
		createAPI, infoAPI apiFlags
		a                  control.AccessApp
		infoOut            string
	)
	create := &cobra.Command{
		Use:   "create NAME --domain HOST[/PATH] [--idp NAME] [--session 24h]",
		Short: "Create an application; add its policies with `adit access policy add`",
		Long: `Create an Access application for a hostname, or a path under it. The most
specific application for a request wins: an exact hostname before a wildcard
(*.example.com), a longer path before a shorter one. Until it has an allow
policy, nobody gets in.`,
		Args: ExactArgs(1, "an application NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.Name = args[0]
			if a.Domain == "" {
				return errors.New("access app create: --domain is required")
			}
			if err := a.Validate(); err != nil {
				return fmt.Errorf("access app create: %w", err)
			}
			c, err := createAPI.apiClient(g.Home)
			if err != nil {
				return err
			}
			out, err := c.CreateAccessApp(cmd.Context(), a)
			if err != nil {
				return fmt.Errorf("access app create: %w", apiError(err))
			}
			fmt.Fprintf(g.Stdout, "Created application %s for %s\nAudience tag (AUD): %s\n", out.Name, out.Domain, out.AUD)
			return nil
		},
	}
	createAPI.register(create)
	create.Flags().StringVar(&a.Domain, "domain", "", "hostname and optional path the application covers (app.example.com/admin)")
	create.Flags().StringVar(&a.IdP, "idp", "", "identity provider people log in with (default: the only one)")
	create.Flags().StringVar(&a.SessionDuration, "session", "", "how long a login lasts (default 24h)")

	list := listCmd(g, &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the applications",
		Args:    ExactArgs(0, "no arguments"),
	}, func(ctx context.Context, c *control.Client, _ []string) ([]control.AccessApp, error) {
		return c.ListAccessApps(ctx)
	}, listing[control.AccessApp]{"No applications.", "NAME\tDOMAIN\tIDP\tSESSION\tPOLICIES\tAUD",
		func(a control.AccessApp) []any {
			return []any{a.Name, a.Domain, orDash(a.IdP), orDash(a.SessionDuration), len(a.Policies), a.AUD}
		}})

	info := &cobra.Command{
		Use:   "info NAME",
		Short: "Show an application and its policies, in the order they are evaluated",
		Args:  ExactArgs(1, "an application NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(infoOut); err != nil {
				return err
			}
			c, err := infoAPI.apiClient(g.Home)
			if err != nil {
				return err
			}
			a, err := c.GetAccessApp(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("access app info: %w", apiError(err))
			}
			if infoOut == "json" {
				return writeJSON(g.Stdout, a)
			}
			printApp(g, a)
			return nil
		},
	}
	infoAPI.register(info)
	outputFlag(info, &infoOut)

	del := recordCmd(g, &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an application (its hostname is then open unless another covers it)",
		Args:  ExactArgs(1, "an application NAME"),
	}, (*control.Client).DeleteAccessApp, "Deleted application %s")
	cmd.AddCommand(create, list, info, del, newAccessAppRevokeCmd(g))
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printApp(g *Env, a control.AccessApp) {
	fmt.Fprintf(g.Stdout, "NAME:     %s\nDOMAIN:   %s\nIDP:      %s\nSESSION:  %s\nAUD:      %s\nCREATED:  %s\n",
		a.Name, a.Domain, orDash(a.IdP), orDash(a.SessionDuration), a.AUD, formatTime(a.CreatedAt))
	if len(a.Policies) == 0 {
		fmt.Fprintln(g.Stdout, "\nNo policies: nobody gets in.")
		return
	}
	fmt.Fprintln(g.Stdout, "\nPOLICIES (bypass and service_auth first, then allow and deny, in order):")
	w := tabwriter.NewWriter(g.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(w, "#\tACTION\tINCLUDE\tREQUIRE\tEXCLUDE")
	for i, p := range a.Policies {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", i+1, p.Action, strings.Join(p.Include, ","), orDash(strings.Join(p.Require, ",")), orDash(strings.Join(p.Exclude, ",")))
	}
	w.Flush()
}

func newAccessPolicyCmd(g *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Manage an application's policies",
		Args:  noArgsGroup,
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	var (
		addAPI, delAPI apiFlags
		p              control.AccessPolicy
	)
	add := &cobra.Command{
		Use:   "add APP --action allow|deny|bypass|service_auth --include RULES [--require RULES] [--exclude RULES]",
		Short: "Add a policy at the end of an application's",
		Long: `Add a policy. RULES are comma-separated (or the flag repeated):
  email:ann@example.com   email_domain:example.com   group:eng (the IdP's groups claim)
  ip:10.0.0.0/8   service_token:NAME   any_valid_service_token   everyone
As in Cloudflare Access: include is OR, require is AND, exclude is NOT. Bypass
and service_auth policies are evaluated first, then allow and deny in order;
the first that matches decides, and no match is a denial. allow and deny judge
a person who logged in; service_auth judges service tokens (and IPs); bypass
lets requests through with no identity at all.`,
		Args: ExactArgs(1, "an application NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := p.Validate(); err != nil {
				return fmt.Errorf("access policy add: %w", err)
			}
			c, err := addAPI.apiClient(g.Home)
			if err != nil {
				return err
			}
			a, err := c.AddAccessPolicy(cmd.Context(), args[0], p)
			if err != nil {
				return fmt.Errorf("access policy add: %w", apiError(err))
			}
			fmt.Fprintf(g.Stdout, "Added policy %d to %s\n", len(a.Policies), a.Name)
			return nil
		},
	}
	addAPI.register(add)
	add.Flags().StringVar(&p.Action, "action", "", "allow, deny, bypass or service_auth")
	add.Flags().StringSliceVar(&p.Include, "include", nil, "rules of which one must match")
	add.Flags().StringSliceVar(&p.Require, "require", nil, "rules that must all match")
	add.Flags().StringSliceVar(&p.Exclude, "exclude", nil, "rules of which none may match")

	del := &cobra.Command{
		Use:   "delete APP N",
		Short: "Delete an application's policy by its number (see `adit access app info`)",
		Args:  ExactArgs(2, "an application NAME and a policy number"),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[1])
			if err != nil || n < 1 {
				return fmt.Errorf("access policy delete: %q is not a policy number (1, 2, ...)", args[1])
			}
			c, err := delAPI.apiClient(g.Home)
			if err != nil {
				return err
			}
			a, err := c.DeleteAccessPolicy(cmd.Context(), args[0], n)
			if err != nil {
				return fmt.Errorf("access policy delete: %w", apiError(err))
			}
			fmt.Fprintf(g.Stdout, "Deleted policy %d of %s (%d left)\n", n, a.Name, len(a.Policies))
			return nil
		},
	}
	delAPI.register(del)
	cmd.AddCommand(add, del)
	return cmd
}

// newAccessServiceTokenCmds are `adit access token create|list|revoke`.
func newAccessServiceTokenCmds(g *Env) []*cobra.Command {
	var (
		createAPI        apiFlags
		duration, output string
	)
	create := &cobra.Command{
		Use:   "create NAME [--duration 8760h]",
		Short: "Create a service token for a machine; its secret is printed once",
		Long: `Create a service token. The Client ID and secret are printed once: the edge
keeps only a hash of the secret. Requests carry them in Adit-Access-Client-Id and
Adit-Access-Client-Secret (or CF-Access-Client-Id and CF-Access-Client-Secret);
an application lets them in with a service_auth policy naming the token.`,
		Args: ExactArgs(1, "a service token NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if err := control.ValidateAccessName("service token", args[0]); err != nil {
				return fmt.Errorf("access token create: %w", err)
			}
			if _, err := control.ParseServiceTokenDuration(duration); err != nil {
				return fmt.Errorf("access token create: --duration: %w", err)
			}
			c, err := createAPI.apiClient(g.Home)
			if err != nil {
				return err
			}
			t, err := c.CreateAccessServiceToken(cmd.Context(), control.CreateServiceTokenRequest{Name: args[0], Duration: duration})
			if err != nil {
				return fmt.Errorf("access token create: %w", apiError(err))
			}
			if output == "json" {
				return writeJSON(g.Stdout, t)
			}
			fmt.Fprintf(g.Stdout, "Created service token %s (expires %s)\n\n  Adit-Access-Client-Id: %s\n  Adit-Access-Client-Secret: %s\n\nThe secret is shown only now; keep it somewhere safe.\n",
				t.Name, formatTime(t.ExpiresAt), t.ClientID, t.ClientSecret)
			return nil
		},
	}
	createAPI.register(create)
	create.Flags().StringVar(&duration, "duration", "", "how long the token is valid (default 8760h)")
	outputFlag(create, &output)

	list := listCmd(g, &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the service tokens (never their secrets)",
		Args:    ExactArgs(0, "no arguments"),
	}, func(ctx context.Context, c *control.Client, _ []string) ([]control.AccessServiceToken, error) {
		return c.ListAccessServiceTokens(ctx)
	}, listing[control.AccessServiceToken]{"No service tokens.", "NAME\tCLIENT ID\tCREATED\tEXPIRES",
		func(t control.AccessServiceToken) []any {
			return []any{t.Name, t.ClientID, formatTime(t.CreatedAt), formatTime(t.ExpiresAt)}
		}})

	revoke := recordCmd(g, &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a service token: every edge refuses it within a second",
		Args:  ExactArgs(1, "a service token NAME"),
	}, (*control.Client).RevokeAccessServiceToken, "Revoked service token %s")
	return []*cobra.Command{create, list, revoke}
}
