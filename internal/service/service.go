// Package service installs and removes the system service that runs a
// connector at boot, as `cloudflared service install` does: a systemd unit
// on Linux, a launchd property list on macOS.
//
// Unlike cloudflared's unit, the tunnel token never appears on the
// service's command line (where `ps` shows it to every user): it is written
// to a 0600 file under [Config.Dir] that the service reads at start. Under
// systemd the unit loads that file (and a credentials file) with
// LoadCredential=, so the connector reads it from its private credentials
// directory ($CREDENTIALS_DIRECTORY, "%d" in the unit) even when it runs as
// an unprivileged user who could not read the original. Under launchd the
// file is made the service user's.
//
// The systemd unit restarts the connector on failure, runs it as
// [Config.User] when one is given, and turns on the sandboxing options a
// connector does not need to do without (see [SystemdUnit]).
package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// Names of what Install writes.
const (
	// UnitName is the systemd unit's file name.
	UnitName = "adit.service"
	// LaunchdLabel is the launchd job's label; its file is LaunchdLabel+".plist".
	LaunchdLabel = "dev.adit.connector"
	// TokenName, ConfigName and CredentialsName are the files written in
	// Config.Dir: the token (0600), the config file (0644) and the
	// credentials file the config names (0600).
	TokenName       = "token"
	ConfigName      = "config.yml"
	CredentialsName = "credentials.json"
)

// Default places on Linux.
const (
	DefaultUnitDir = "/etc/systemd/system"
	DefaultDir     = "/etc/adit"
)

// Config says what service to install. Binary and at least one of Token
// and ConfigFile are required.
type Config struct {
	// OS chooses the service manager: "linux" (systemd) or "darwin"
	// (launchd). If empty, runtime.GOOS; any other value is refused.
	OS string
	// Binary is the absolute path of the adit binary the service runs.
	Binary string
	// Token is the tunnel token. It is written to Dir/token (0600), which
	// the service reads at start (tunnel run --token-file). If empty, the
	// tunnel's credentials come from CredentialsFile.
	Token string
	// ConfigFile is a config.yml (cloudflared's format) to run with: it is
	// copied to Dir/config.yml, which the service runs with
	// (tunnel run --config; under systemd, `systemctl reload adit` makes
	// it re-read the file). If empty, the connector takes its ingress
	// rules from the edge (a remotely-managed tunnel).
	ConfigFile string
	// CredentialsFile is the tunnel credentials file (the config's
	// credentials-file), copied to Dir/credentials.json (0600) and read
	// by the service at start. Ignored when Token is set.
	CredentialsFile string
	// User is the account the service runs as; it must exist. If empty,
	// root (for a launchd agent: the user who installs it).
	User string
	// UnitDir is where the unit (or plist) goes. If empty, the system's
	// place: /etc/systemd/system; on macOS /Library/LaunchDaemons for
	// root, ~/Library/LaunchAgents for anyone else.
	UnitDir string
	// Dir is where the token, config and credentials copies go. If empty,
	// /etc/adit (on macOS for anyone but root: ~/.adit).
	Dir string
	// Manage runs the service manager after writing: systemctl
	// daemon-reload and enable --now (launchctl load -w), and the reverse
	// on Uninstall. If false, Install only writes the files and
	// Result.Next says what to run.
	Manage bool
	// Run runs a service manager command. If nil, the command is executed
	// and its combined output goes into the error if it fails.
	Run func(ctx context.Context, name string, args ...string) error
}

// Result says what Install or Uninstall did.
type Result struct {
	// Unit is the unit (or plist) file written or removed.
	Unit string
	// Written and Removed list the files written or removed, Unit first.
	Written, Removed []string
	// Kept lists files Uninstall left in place (the config file).
	Kept []string
	// Next lists the commands to run when Manage was false.
	Next []string
}

// check fills the defaults of cfg and checks it.
func (cfg *Config) check(install bool) error {
	if cfg.OS == "" {
		cfg.OS = runtime.GOOS
	}
	if cfg.OS != "linux" && cfg.OS != "darwin" {
		return fmt.Errorf("service: %s has no service manager adit knows (systemd on linux, launchd on darwin)", cfg.OS)
	}
	root := os.Geteuid() == 0
	if cfg.UnitDir == "" {
		switch {
		case cfg.OS == "linux":
			cfg.UnitDir = DefaultUnitDir
		case root:
			cfg.UnitDir = "/Library/LaunchDaemons"
		default:
			home, err := os.UserHomeDir()
			if err != nil {
				return fmt.Errorf("service: no home directory for the launch agent: %w", err)
			}
			cfg.UnitDir = filepath.Join(home, "Library", "LaunchAgents")
		}
	}
	if cfg.Dir == "" {
		cfg.Dir = DefaultDir
		if cfg.OS == "darwin" && !root {
			home, err := os.UserHomeDir()
			if err != nil {
				return fmt.Errorf("service: no home directory: %w", err)
			}
			cfg.Dir = filepath.Join(home, ".adit")
		}
	}
	for name, p := range map[string]*string{"unit dir": &cfg.UnitDir, "config dir": &cfg.Dir} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("service: %s %q: %w", name, *p, err)
		}
		*p = abs
	}
	if !install {
		return nil
	}
	if !filepath.IsAbs(cfg.Binary) {
		return fmt.Errorf("service: binary %q is not an absolute path", cfg.Binary)
	}
	if cfg.Token == "" && cfg.ConfigFile == "" {
		return errors.New("service: want a token or a config file")
	}
	if cfg.Token == "" && cfg.CredentialsFile == "" {
		return errors.New("service: the config names no credentials-file and there is no token: the service would not know the tunnel's secret")
	}
	if strings.ContainsAny(cfg.Token, " \t\r\n") {
		return errors.New("service: the token holds white space")
	}
	for name, v := range map[string]string{"binary": cfg.Binary, "unit dir": cfg.UnitDir, "config dir": cfg.Dir, "user": cfg.User} {
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return fmt.Errorf("service: %s %q holds a control character", name, v)
		}
	}
	if cfg.User != "" {
		if strings.ContainsAny(cfg.User, " :/\"'\\%$") || strings.HasPrefix(cfg.User, "-") {
			return fmt.Errorf("service: user %q is not an account name", cfg.User)
		}
		if cfg.User == "nobody" {
			return errors.New("service: user nobody: it owns whatever is unmapped (NFS, user namespaces); create a user of its own for the connector, e.g. useradd --system --no-create-home --shell /usr/sbin/nologin adit")
		}
		if cfg.OS == runtime.GOOS {
			if _, err := user.Lookup(cfg.User); err != nil {
				return fmt.Errorf("service: user %q: %w (create it first, e.g. useradd --system --no-create-home --shell /usr/sbin/nologin %s)", cfg.User, err, cfg.User)
			}
		}
	}
	return nil
}

// files are the paths Install writes for cfg.
type files struct {
	unit, token, config, creds string
}

func (cfg *Config) files() files {
	f := files{unit: filepath.Join(cfg.UnitDir, UnitName)}
	if cfg.OS == "darwin" {
		f.unit = filepath.Join(cfg.UnitDir, LaunchdLabel+".plist")
	}
	if cfg.Token != "" {
		f.token = filepath.Join(cfg.Dir, TokenName)
	} else if cfg.CredentialsFile != "" {
		f.creds = filepath.Join(cfg.Dir, CredentialsName)
	}
	if cfg.ConfigFile != "" {
		f.config = filepath.Join(cfg.Dir, ConfigName)
	}
	return f
}

// Install writes the token, config and credentials copies and the unit,
// then (with Manage) enables and starts the service.
func Install(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.check(true); err != nil {
		return nil, err
	}
	f := cfg.files()
	var unit []byte
	var err error
	if cfg.OS == "darwin" {
		unit, err = LaunchdPlist(cfg, f.token, f.config, f.creds)
	} else {
		unit, err = SystemdUnit(cfg, f.token, f.config, f.creds)
	}
	if err != nil {
		return nil, err
	}
	res := &Result{Unit: f.unit}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	// The secrets belong to the service's user under launchd, which has no
	// LoadCredential; under systemd PID 1 reads them as root.
	owner := -1
	if cfg.OS == "darwin" && cfg.User != "" {
		if owner, err = uid(cfg.User); err != nil {
			return nil, err
		}
	}
	if f.token != "" {
		if err := writeFile(f.token, []byte(cfg.Token+"\n"), 0o600, owner); err != nil {
			return nil, err
		}
		res.Written = append(res.Written, f.token)
	}
	for _, c := range []struct {
		from, to string
		mode     os.FileMode
		owner    int
	}{{cfg.ConfigFile, f.config, 0o644, -1}, {cfg.CredentialsFile, f.creds, 0o600, owner}} {
		if c.to == "" {
			continue
		}
		b, err := os.ReadFile(c.from)
		if err != nil {
			return nil, fmt.Errorf("service: %w", err)
		}
		if err := writeFile(c.to, b, c.mode, c.owner); err != nil {
			return nil, err
		}
		res.Written = append(res.Written, c.to)
	}
	if err := os.MkdirAll(cfg.UnitDir, 0o755); err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	if err := writeFile(f.unit, unit, 0o644, -1); err != nil {
		return nil, err
	}
	res.Written = append([]string{f.unit}, res.Written...)

	cmds := installCommands(cfg.OS, f.unit)
	if !cfg.Manage {
		res.Next = joinCommands(cmds)
		return res, nil
	}
	for _, c := range cmds {
		if err := cfg.run(ctx, c); err != nil {
			return res, err
		}
	}
	return res, nil
}

// Uninstall stops and disables the service (with Manage), then removes
// its unit and the secrets Install wrote. The config copy is kept, as
// cloudflared keeps /etc/cloudflared/config.yml.
func Uninstall(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.check(false); err != nil {
		return nil, err
	}
	unit := filepath.Join(cfg.UnitDir, UnitName)
	if cfg.OS == "darwin" {
		unit = filepath.Join(cfg.UnitDir, LaunchdLabel+".plist")
	}
	res := &Result{Unit: unit}
	if _, err := os.Stat(unit); err != nil {
		return nil, fmt.Errorf("service: not installed: %w", err)
	}
	stop, reload := uninstallCommands(cfg.OS, unit)
	if cfg.Manage {
		for _, c := range stop {
			if err := cfg.run(ctx, c); err != nil {
				return nil, err
			}
		}
	} else {
		res.Next = joinCommands(stop)
	}
	for _, p := range []string{unit, filepath.Join(cfg.Dir, TokenName), filepath.Join(cfg.Dir, CredentialsName)} {
		err := os.Remove(p)
		switch {
		case err == nil:
			res.Removed = append(res.Removed, p)
		case !errors.Is(err, os.ErrNotExist):
			return res, fmt.Errorf("service: %w", err)
		}
	}
	if c := filepath.Join(cfg.Dir, ConfigName); fileExists(c) {
		res.Kept = append(res.Kept, c)
	}
	if cfg.Manage {
		for _, c := range reload {
			if err := cfg.run(ctx, c); err != nil {
				return res, err
			}
		}
	} else {
		res.Next = append(res.Next, joinCommands(reload)...)
	}
	return res, nil
}

func installCommands(goos, unit string) [][]string {
	if goos == "darwin" {
		return [][]string{{"launchctl", "load", "-w", unit}}
	}
	return [][]string{{"systemctl", "daemon-reload"}, {"systemctl", "enable", "--now", UnitName}}
}

// uninstallCommands are run before the files are removed (stop) and after.
func uninstallCommands(goos, unit string) (stop, after [][]string) {
	if goos == "darwin" {
		return [][]string{{"launchctl", "unload", "-w", unit}}, nil
	}
	return [][]string{{"systemctl", "disable", "--now", UnitName}}, [][]string{{"systemctl", "daemon-reload"}}
}

func joinCommands(cmds [][]string) []string {
	var s []string
	for _, c := range cmds {
		s = append(s, strings.Join(c, " "))
	}
	return s
}

func (cfg *Config) run(ctx context.Context, c []string) error {
	if cfg.Run != nil {
		return cfg.Run(ctx, c[0], c[1:]...)
	}
	out, err := exec.CommandContext(ctx, c[0], c[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("service: %s: %w: %s", strings.Join(c, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// writeFile writes b to path atomically with mode, owned by uid owner (if
// not -1).
func writeFile(path string, b []byte, mode os.FileMode, owner int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, nothing
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("service: %w", err)
	}
	if owner >= 0 {
		if err := tmp.Chown(owner, -1); err != nil {
			tmp.Close()
			return fmt.Errorf("service: %w", err)
		}
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("service: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	return nil
}

func uid(name string) (int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, fmt.Errorf("service: user %q: %w", name, err)
	}
	id, err := strconv.Atoi(u.Uid)
	if err != nil {
		return 0, fmt.Errorf("service: user %q has uid %q", name, u.Uid)
	}
	return id, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
