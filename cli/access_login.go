package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/access/accesslogin"
)

// `adit access login|token|curl`: a person's session for an Access
// application at the terminal (package access/accesslogin).

// tokenStore is where session tokens are kept: ADIT_HOME/access.
func tokenStore(g *Env) accesslogin.Store {
	return accesslogin.Store{Dir: filepath.Join(g.Home, "access")}
}

// openBrowser opens url with $BROWSER, xdg-open or open.
func openBrowser(url string) error {
	var cmd *exec.Cmd
	switch {
	case os.Getenv("BROWSER") != "":
		cmd = exec.Command(os.Getenv("BROWSER"), url)
	case runtime.GOOS == "darwin":
		cmd = exec.Command("open", url)
	case runtime.GOOS == "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		cmd = exec.Command("xdg-open", url)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}

// accessLogin logs in to appURL in the browser and stores the token.
func accessLogin(ctx context.Context, g *Env, appURL string, noBrowser bool) (string, error) {
	opts := accesslogin.Options{AppURL: appURL, Notify: g.Stderr}
	if !noBrowser {
		opts.Open = openBrowser
	}
	tok, err := accesslogin.Login(ctx, opts)
	if err != nil {
		return "", err
	}
	if err := tokenStore(g).Save(appURL, tok); err != nil {
		return "", err
	}
	return tok, nil
}

func newAccessLoginCmd(g *Env) *cobra.Command {
	var noBrowser bool
	cmd := &cobra.Command{
		Use:   "login URL",
		Short: "Log in to an Access application in the browser and keep the token for the terminal",
		Long: `Open the browser at the application's login, wait for it on a local port, and
keep the session token under the adit home directory (mode 0600) for
'adit access token', 'adit access curl' and 'adit access tcp|ssh'.`,
		Args: ExactArgs(1, "the application's URL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := accessLogin(cmd.Context(), g, args[0], noBrowser)
			if err != nil {
				return err
			}
			exp, _ := accesslogin.Expiry(tok)
			fmt.Fprintf(g.Stdout, "Logged in to %s (until %s)\n", args[0], formatTime(exp))
			return nil
		},
	}
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "only print the login URL; open it yourself")
	return cmd
}

// newAccessTokenCmd is `adit access token URL` (print the session token)
// and the service token commands under it.
func newAccessTokenCmd(g *Env) *cobra.Command {
	var app string
	cmd := &cobra.Command{
		Use:   "token URL | token create|list|revoke",
		Short: "Print the session token of an application, or manage service tokens",
		Long: `'adit access token URL' prints the session token 'adit access login URL' kept,
for scripts: curl -H "cf-access-token: $(adit access token URL)" URL.

'adit access token create|list|revoke' manage service tokens for machines.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if app == "" && len(args) == 1 {
				app = args[0]
			} else if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			if app == "" {
				return cmd.Help()
			}
			if !strings.Contains(app, ".") && !strings.Contains(app, "://") && !strings.Contains(app, "localhost") {
				return unknownCommand(cmd, app)
			}
			tok, err := tokenStore(g).Load(app, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintln(g.Stdout, tok)
			return nil
		},
	}
	cmd.Flags().StringVar(&app, "app", "", "the application's URL (cloudflared's flag; the same as the argument)")
	cmd.AddCommand(newAccessServiceTokenCmds(g)...)
	return cmd
}

func newAccessCurlCmd(g *Env) *cobra.Command {
	var noBrowser bool
	cmd := &cobra.Command{
		Use:   "curl URL [-- CURL ARGS...]",
		Short: "Run curl on an Access application with the session token (logging in first if needed)",
		Long: `Run curl with the session token in the cf-access-token header. The token goes
to curl in a file only this user can read, never on its command line.

  adit access curl https://app.example.com/api -- -sS -X POST -d @body.json`,
		Args: minArgs(1, "the application's URL, then -- and curl's arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			url := args[0]
			if dash := cmd.ArgsLenAtDash(); dash > 1 {
				return fmt.Errorf("access curl: want the URL first, then -- and curl's arguments")
			}
			if _, err := accesslogin.ParseAppURL(url); err != nil {
				return err
			}
			ctx := cmd.Context()
			tok, err := tokenStore(g).Load(url, time.Now())
			if errors.Is(err, accesslogin.ErrNoToken) {
				tok, err = accessLogin(ctx, g, url, noBrowser)
			}
			if err != nil {
				return err
			}
			dir, err := os.MkdirTemp("", "adit-curl-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			hdr := filepath.Join(dir, "header")
			if err := os.WriteFile(hdr, []byte("cf-access-token: "+tok+"\n"), 0o600); err != nil {
				return err
			}
			c := exec.CommandContext(ctx, "curl", append(append([]string{"-H", "@" + hdr}, args[1:]...), url)...)
			c.Stdin, c.Stdout, c.Stderr = cmd.InOrStdin(), g.Stdout, g.Stderr
			if err := c.Run(); err != nil {
				var exit *exec.ExitError
				if errors.As(err, &exit) {
					return fmt.Errorf("access curl: curl exited with %d", exit.ExitCode())
				}
				return fmt.Errorf("access curl: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "if a login is needed, only print its URL")
	return cmd
}
