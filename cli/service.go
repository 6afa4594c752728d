package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/credentials"
	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/internal/service"
)

// serviceFlags are `adit service install|uninstall`'s flags.
type serviceFlags struct {
	tokenFile string
	config    string
	user      string
	unitDir   string
	configDir string
	goos      string // hidden: generate another system's service (tests, packaging)
}

func newServiceCmd(g *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Install or remove the connector as a system service (systemd, launchd)",
		Args:  noArgsGroup,
	}
	cmd.AddCommand(newServiceInstallCmd(g), newServiceUninstallCmd(g))
	return cmd
}

func (f *serviceFlags) common(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.unitDir, "unit-dir", "", "write the unit here, and leave systemctl (launchctl) to you (default: "+service.DefaultUnitDir+", or /Library/LaunchDaemons on macOS, and the service is enabled and started)")
	fl.StringVar(&f.configDir, "config-dir", "", "where the service's token, config and credentials live (default: "+service.DefaultDir+")")
	fl.StringVar(&f.goos, "goos", "", "write the service of this system (linux: systemd, darwin: launchd) instead of this one's")
	fl.MarkHidden("goos")
}

func (f *serviceFlags) config0() service.Config {
	return service.Config{
		OS:      f.goos,
		UnitDir: f.unitDir,
		Dir:     f.configDir,
		Manage:  f.unitDir == "",
	}
}

func newServiceInstallCmd(g *Env) *cobra.Command {
	var f serviceFlags
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Run a tunnel's connector at boot: write a systemd unit (a launchd job on macOS), enable and start it",
		Long: `Install the connector as a system service, as 'cloudflared service install' does:
a systemd unit /etc/systemd/system/adit.service (on macOS a launchd job,
/Library/LaunchDaemons/dev.adit.connector.plist), enabled and started at once.

With --token-file (or ADIT_TUNNEL_TOKEN), the service runs the tunnel of that
token; the token is copied to a 0600 file (/etc/adit/token) that the service
reads at start, never on its command line where 'ps' would show it. With
--config, the config file is copied to /etc/adit/config.yml (edit it there,
then 'systemctl reload adit'), and the credentials file it names to
/etc/adit/credentials.json (0600). With neither, the config file is the one
'adit tunnel run' would find.

The unit restarts the connector 5s after it fails, runs it as --user (an
existing account; create one with 'useradd --system --no-create-home --shell
/usr/sbin/nologin adit') or root, and sandboxes it (NoNewPrivileges, no
capabilities, ProtectSystem=full, ...). Logs: 'journalctl -u adit'.
--unit-dir writes the unit elsewhere (a package build, a chroot) and leaves
enabling it to you.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return serviceInstall(cmd, g, f)
		},
	}
	cmd.Flags().StringVar(&f.tokenFile, "token-file", "", "file holding the tunnel token (or set ADIT_TUNNEL_TOKEN)")
	cmd.Flags().StringVar(&f.config, "config", "", "config.yml to run with (cloudflared format)")
	cmd.Flags().StringVar(&f.user, "user", "", "run the connector as this existing user (default: root)")
	f.common(cmd)
	return cmd
}

func serviceInstall(cmd *cobra.Command, g *Env, f serviceFlags) error {
	cfg := f.config0()
	cfg.User = f.user
	tok, err := credentials.TokenFromSources("", f.tokenFile, os.Getenv)
	if err != nil {
		return fmt.Errorf("service install: %w", err)
	}
	if tok != "" {
		if _, err := credentials.ParseToken(tok); err != nil {
			return fmt.Errorf("service install: %w", err)
		}
		cfg.Token = tok
	}
	path := f.config
	if path == "" && tok == "" {
		if path = findConfig(g.Home); path == "" {
			return fmt.Errorf("service install: want --token-file FILE (or ADIT_TUNNEL_TOKEN) or --config FILE; no config file found in %s", strings.Join(configCandidates(g.Home), ", "))
		}
	}
	if path != "" {
		if cfg.ConfigFile, cfg.CredentialsFile, err = serviceConfig(g, path, tok != ""); err != nil {
			return err
		}
	}
	if cfg.Binary, err = os.Executable(); err != nil {
		return fmt.Errorf("service install: the adit binary's path: %w", err)
	}
	if p, err := filepath.EvalSymlinks(cfg.Binary); err == nil {
		cfg.Binary = p
	}
	res, err := service.Install(cmd.Context(), cfg)
	if err != nil && res != nil {
		// Written and enabled, but systemctl start failed: the unit waits
		// until the connector is connected (Type=notify).
		return fmt.Errorf("service install: %s is installed but did not start: %w (see %s)", res.Unit, err, logsHint(cfg.OS))
	}
	if err != nil {
		return fmt.Errorf("service install: %w", rootHint(err))
	}
	out := cmd.OutOrStdout()
	for _, p := range res.Written {
		fmt.Fprintf(out, "wrote %s\n", p)
	}
	if len(res.Next) > 0 {
		fmt.Fprintf(out, "to enable and start it: %s\n", strings.Join(res.Next, "; "))
		return nil
	}
	fmt.Fprintf(out, "service adit installed, enabled and started (logs: %s)\n", logsHint(cfg.OS))
	return nil
}

// serviceConfig checks the config file at path as `tunnel run` would take
// it and finds its credentials file (not needed with a token): its
// credentials-file, or $ADIT_HOME/<UUID>.json for its tunnel.
func serviceConfig(g *Env, path string, haveToken bool) (configFile, credsFile string, err error) {
	cfg, err := ingress.Load(path)
	if err != nil {
		return "", "", fmt.Errorf("service install: %w", err)
	}
	f := runFlags{}
	if _, err := applyRunConfig(&Env{}, &f, path, cfg); err != nil {
		return "", "", fmt.Errorf("service install: %w", err)
	}
	if _, err := ingress.New(cfg); err != nil {
		return "", "", fmt.Errorf("service install: %s: %w", path, err)
	}
	if configFile, err = filepath.Abs(path); err != nil {
		return "", "", fmt.Errorf("service install: %w", err)
	}
	if haveToken {
		return configFile, "", nil
	}
	credsFile = cfg.CredentialsFile
	if credsFile == "" {
		if _, err := uuid.Parse(cfg.Tunnel); err != nil {
			return "", "", fmt.Errorf("service install: %s names no credentials-file, and its tunnel %q is not a UUID to find one by; add credentials-file: or pass --token-file", path, cfg.Tunnel)
		}
		credsFile = credentials.CredentialsPath(g.Home, cfg.Tunnel)
	}
	if _, err := credentials.Load(credsFile); err != nil {
		return "", "", fmt.Errorf("service install: the tunnel's credentials: %w", err)
	}
	return configFile, credsFile, nil
}

func newServiceUninstallCmd(g *Env) *cobra.Command {
	var f serviceFlags
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Stop and remove the connector's service (the config file is kept)",
		Long: `Stop and disable the service 'adit service install' wrote, and remove its unit
and the token and credentials copies; /etc/adit/config.yml is kept, as
cloudflared keeps its config. Give the same --unit-dir and --config-dir as
at install.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := service.Uninstall(cmd.Context(), f.config0())
			if err != nil {
				return fmt.Errorf("service uninstall: %w", rootHint(err))
			}
			out := cmd.OutOrStdout()
			for _, p := range res.Removed {
				fmt.Fprintf(out, "removed %s\n", p)
			}
			for _, p := range res.Kept {
				fmt.Fprintf(out, "kept %s\n", p)
			}
			if len(res.Next) > 0 {
				fmt.Fprintf(out, "to stop it: %s\n", strings.Join(res.Next, "; "))
			}
			return nil
		},
	}
	f.common(cmd)
	return cmd
}

// rootHint adds what to do to a permission error.
func rootHint(err error) error {
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w (run as root, or write elsewhere with --unit-dir and --config-dir)", err)
	}
	return err
}

func logsHint(goos string) string {
	if goos == "darwin" || goos == "" && runtime.GOOS == "darwin" {
		return "/Library/Logs/adit.log"
	}
	return "journalctl -u adit"
}
