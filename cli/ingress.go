package cli

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/ingress"
)

// configDirs are where a config.yml is looked for when none is named, in
// order: adit's home, then cloudflared's user and system directories, so a
// cloudflared user's existing config is found.
func configDirs(home string) []string {
	dirs := []string{home}
	if u, err := os.UserHomeDir(); err == nil && u != "" {
		dirs = append(dirs, filepath.Join(u, ".cloudflared"))
	}
	return append(dirs, "/etc/cloudflared")
}

// configCandidates lists the files findConfig tries, in order.
func configCandidates(home string) []string {
	var files []string
	for _, d := range configDirs(home) {
		files = append(files, filepath.Join(d, "config.yml"), filepath.Join(d, "config.yaml"))
	}
	return files
}

// findConfig returns the first existing config file of configCandidates,
// or "" if there is none. `tunnel run` (without --config or --url) and
// `tunnel ingress` (without --config) both use it.
func findConfig(home string) string {
	for _, f := range configCandidates(home) {
		if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() {
			return f
		}
	}
	return ""
}

// noConfigError says where a config file was looked for.
func noConfigError(what string, home string) error {
	return fmt.Errorf("%s: no config file: pass --config FILE, or create one of %s", what, strings.Join(configCandidates(home), ", "))
}

func newTunnelIngressCmd(g *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ingress",
		Short: "Check a config file's ingress rules; keep a tunnel's rules on the edge",
		Long: `Check the ingress rules of a config file (cloudflared's config.yml format),
or keep them on the edge for connectors that run without a config file (set,
get, history, rollback).

Without --config, the file is the first found of config.yml (or config.yaml)
in $ADIT_HOME (--home), ~/.cloudflared and /etc/cloudflared: the same search
'adit tunnel run' makes when given neither --config nor --url.`,
		Args: noArgsGroup,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(newIngressValidateCmd(g), newIngressRuleCmd(g),
		newIngressSetCmd(g), newIngressGetCmd(g), newIngressHistoryCmd(g), newIngressRollbackCmd(g)) // tunnelconfig.go
	return cmd
}

// ingressConfig is the --config flag of the ingress subcommands.
type ingressConfig struct{ path string }

func (c *ingressConfig) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&c.path, "config", "", "config file (default: the first of config.yml in $ADIT_HOME, ~/.cloudflared, /etc/cloudflared)")
}

// file returns --config, or else the file findConfig finds.
func (c *ingressConfig) file(g *Env, what string) (string, error) {
	if c.path != "" {
		return c.path, nil
	}
	if path := findConfig(g.Home); path != "" {
		return path, nil
	}
	return "", noConfigError(what, g.Home)
}

// loadRules prints which file is used (as cloudflared does, with its
// message), then loads and validates it.
func loadRules(g *Env, path, verb string) (*ingress.Ingress, error) {
	fmt.Fprintf(g.Stdout, "%s rules from %s\n", verb, path)
	cfg, err := ingress.Load(path)
	if err != nil {
		return nil, err
	}
	return ingress.New(cfg)
}

func newIngressValidateCmd(g *Env) *cobra.Command {
	var c ingressConfig
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check that a config file's ingress rules are valid",
		Long: `Parse and validate a config file's ingress rules and originRequest options.
Prints OK, or the first problem (which rule, which key, and why) and exits 1.`,
		Args: ExactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := c.file(g, "ingress validate")
			if err != nil {
				return err
			}
			if _, err := loadRules(g, path, "Validating"); err != nil {
				return fmt.Errorf("validation failed: %w", err)
			}
			fmt.Fprintln(g.Stdout, "OK")
			return nil
		},
	}
	c.register(cmd)
	return cmd
}

func newIngressRuleCmd(g *Env) *cobra.Command {
	var c ingressConfig
	cmd := &cobra.Command{
		Use:   "rule URL",
		Short: "Show which ingress rule serves a URL, and why",
		Long: `Show which ingress rule a request for URL would match: its number, hostname,
path and service, why it matches, and why each rule before it does not.
URL may omit its scheme: app.example.com/path.`,
		Args: ExactArgs(1, "a URL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, urlPath, err := parseRuleURL(args[0])
			if err != nil {
				return err
			}
			file, err := c.file(g, "ingress rule")
			if err != nil {
				return err
			}
			ing, err := loadRules(g, file, "Using")
			if err != nil {
				return err
			}
			explainMatch(g.Stdout, ing, host, urlPath)
			return nil
		},
	}
	c.register(cmd)
	return cmd
}

// parseRuleURL returns the host (with any port) and path of a URL given to
// `ingress rule`; a URL without a scheme is taken as https.
func parseRuleURL(raw string) (host, path string, err error) {
	s := raw
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", "", fmt.Errorf("ingress rule: %q is not a URL: %v", raw, errors.Unwrap(err))
	}
	if u.Host == "" {
		return "", "", fmt.Errorf("ingress rule: %q has no hostname; want a URL like https://app.example.com/path", raw)
	}
	path = u.Path
	if path == "" {
		path = "/" // what a request for the bare URL carries
	}
	return u.Host, path, nil
}

// explainMatch prints the rule that matches host and path, cloudflared's
// way ("Matched rule #N" and the rule's fields), then why, and why each
// earlier rule did not match.
func explainMatch(w io.Writer, ing *ingress.Ingress, host, path string) {
	i, r := ing.Match(host, path)
	if r == nil {
		fmt.Fprintln(w, "No rule matches (the config has no rules).")
		return
	}
	fmt.Fprintf(w, "Matched rule #%d\n", i+1)
	if r.Hostname != "" {
		fmt.Fprintf(w, "\thostname: %s\n", r.Hostname)
	}
	if r.Path != nil {
		fmt.Fprintf(w, "\tpath: %s\n", r.Path)
	}
	fmt.Fprintf(w, "\tservice: %s\n", r.Service)
	fmt.Fprintf(w, "Why: %s.\n", matchReason(r, host, path))
	if i > 0 {
		fmt.Fprintln(w, "Rules before it:")
		for j := range i {
			e := &ing.Rules[j]
			fmt.Fprintf(w, "\t#%d %s: %s\n", j+1, ruleLabel(e), missReason(e, host, path))
		}
	}
}

// hostMatches reports whether r's hostname matches host, whatever its path.
func hostMatches(r *ingress.Rule, host string) bool {
	only := *r
	only.Path = nil
	i, _ := (&ingress.Ingress{Rules: []ingress.Rule{only}}).Match(host, "/")
	return i == 0
}

func ruleLabel(r *ingress.Rule) string {
	label := r.Hostname
	if label == "" {
		label = "*"
	}
	if r.Path != nil {
		label += " path " + r.Path.String()
	}
	return label
}

func matchReason(r *ingress.Rule, host, path string) string {
	if r.CatchAll() {
		return "it names no hostname (or \"*\") and no path, so it matches every request (the catch-all)"
	}
	var parts []string
	switch {
	case r.Hostname == "" || r.Hostname == "*":
		parts = append(parts, "it matches every hostname")
	case strings.HasPrefix(r.Hostname, "*."):
		parts = append(parts, fmt.Sprintf("the hostname %q is under the wildcard %q", hostOnly(host), r.Hostname))
	default:
		parts = append(parts, fmt.Sprintf("the hostname %q is %q", hostOnly(host), r.Hostname))
	}
	if r.Path == nil {
		parts = append(parts, "it has no path, so every path matches")
	} else {
		parts = append(parts, fmt.Sprintf("the path %q matches the regexp %s", path, r.Path))
	}
	return strings.Join(parts, ", and ")
}

func missReason(r *ingress.Rule, host, path string) string {
	if !hostMatches(r, host) {
		if strings.HasPrefix(r.Hostname, "*.") {
			return fmt.Sprintf("the hostname %q is not under %q", hostOnly(host), r.Hostname)
		}
		return fmt.Sprintf("the hostname %q is not %q", hostOnly(host), r.Hostname)
	}
	return fmt.Sprintf("the hostname matches, but the path %q does not match the regexp %s", path, r.Path)
}

// hostOnly drops a port from host for display.
func hostOnly(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		return host[:i]
	}
	return host
}
