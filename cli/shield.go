package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/control"
)

// The shield's commands (issue 12): adit waf, adit ratelimit, adit ip-rule.

// seconds parses a whole number of seconds given as a duration ("1m").
func seconds(flag string, d time.Duration) (control.Seconds, error) {
	if d < 0 || d%time.Second != 0 {
		return 0, fmt.Errorf("--%s %s: want a whole number of seconds (e.g. 30s, 1m, 1h)", flag, d)
	}
	return control.Seconds(d / time.Second), nil
}

func newWAFCmd(g *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "waf",
		Short: "The web application firewall: the OWASP Core Rule Set per hostname",
		Long: `Set the WAF (Coraza with the OWASP Core Rule Set v4) of a hostname, or of '*',
the default of every hostname without its own setting.

  adit waf set app.example.com --mode block --paranoia 2
  adit waf set '*' --mode detect
  adit waf exclude app.example.com --rule 942100 --path '^/search'
  adit waf rules add app.example.com --file custom.conf
  adit waf rules add app.example.com --file setup.conf --before-crs
  adit waf show app.example.com`,
		Args: noArgsGroup,
	}
	cmd.AddCommand(newWAFSetCmd(g), newWAFShowCmd(g), newWAFListCmd(g), newWAFDeleteCmd(g), newWAFExcludeCmd(g), newWAFRulesCmd(g))
	return cmd
}

func newWAFSetCmd(g *Env) *cobra.Command {
	var (
		api                     apiFlags
		mode, bodyAction        string
		paranoia, inbound, outb int
		bodyLimit, respLimit    int64
		output                  string
	)
	cmd := &cobra.Command{
		Use:   "set HOSTNAME|'*'",
		Short: "Set a hostname's WAF mode, paranoia level, thresholds and body limit",
		Long: `Set a hostname's WAF. Flags not given keep their value; a hostname without a
setting needs --mode. Modes: block (a matching request gets 403 and never
reaches the tunnel), detect (matches are logged, requests forwarded), off.`,
		Args: ExactArgs(1, "a HOSTNAME or '*'"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			var s control.WAFSettings
			fl := cmd.Flags()
			if fl.Changed("mode") {
				s.Mode = &mode
			}
			if fl.Changed("paranoia") {
				s.Paranoia = &paranoia
			}
			if fl.Changed("inbound-threshold") {
				s.InboundThreshold = &inbound
			}
			if fl.Changed("outbound-threshold") {
				s.OutboundThreshold = &outb
			}
			if fl.Changed("body-limit") {
				s.BodyLimit = &bodyLimit
			}
			if fl.Changed("body-limit-action") {
				s.BodyLimitAction = &bodyAction
			}
			if fl.Changed("response-body-limit") {
				s.ResponseBodyLimit = &respLimit
			}
			c, err := api.apiClient(g.Home)
			if err != nil {
				return err
			}
			cfg, err := c.SetWAF(cmd.Context(), args[0], s)
			if err != nil {
				return cmdErr(cmd, err)
			}
			if output == "json" {
				return writeJSON(g.Stdout, cfg)
			}
			fmt.Fprintf(g.Stdout, "WAF of %s: %s, paranoia %d, thresholds %d/%d, body limit %d bytes (%s), response body limit %d bytes\n",
				cfg.Hostname, cfg.Mode, cfg.Paranoia, cfg.InboundThreshold, cfg.OutboundThreshold, cfg.BodyLimit, cfg.BodyLimitAction, cfg.ResponseBodyLimit)
			return nil
		},
	}
	api.register(cmd)
	outputFlag(cmd, &output)
	fl := cmd.Flags()
	fl.StringVar(&mode, "mode", "", "off, detect or block")
	fl.IntVar(&paranoia, "paranoia", 0, "the CRS's paranoia level, 1-4 (default 1)")
	fl.IntVar(&inbound, "inbound-threshold", 0, "the CRS's inbound anomaly score threshold (default 5)")
	fl.IntVar(&outb, "outbound-threshold", 0, "the CRS's outbound anomaly score threshold, for answers (default 4; block mode refuses an answer that reaches it)")
	fl.Int64Var(&bodyLimit, "body-limit", 0, "bytes of a request body inspected (default 131072; at most 67108864)")
	fl.StringVar(&bodyAction, "body-limit-action", "", "a longer body: reject (413, the default) or partial (inspect the first --body-limit bytes, forward all)")
	fl.Int64Var(&respLimit, "response-body-limit", 0, "bytes of an answer's body inspected (default 524288; at most 67108864)")
	return cmd
}

func newWAFShowCmd(g *Env) *cobra.Command {
	var (
		api    apiFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "show HOSTNAME|'*'",
		Short: "Show a hostname's WAF setting, exclusions and rules",
		Args:  ExactArgs(1, "a HOSTNAME or '*'"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := api.apiClient(g.Home)
			if err != nil {
				return err
			}
			cfg, err := c.GetWAF(cmd.Context(), args[0])
			if errors.Is(err, control.ErrNotFound) && args[0] != control.AllHosts {
				def, derr := c.GetWAF(cmd.Context(), control.AllHosts)
				if derr == nil {
					if output == "json" {
						return writeJSON(g.Stdout, def)
					}
					fmt.Fprintf(g.Stdout, "%s has no setting of its own; it has '*''s:\n", args[0])
					cfg, err = def, nil
				}
			}
			if err != nil {
				return cmdErr(cmd, err)
			}
			if output == "json" {
				return writeJSON(g.Stdout, cfg)
			}
			w := g.Stdout
			fmt.Fprintf(w, "hostname            %s\nmode                %s\nparanoia            %d\ninbound threshold   %d\noutbound threshold  %d\nbody limit          %d bytes (%s)\nresponse body limit %d bytes\nupdated             %s\n",
				cfg.Hostname, cfg.Mode, cfg.Paranoia, cfg.InboundThreshold, cfg.OutboundThreshold, cfg.BodyLimit, cfg.BodyLimitAction, cfg.ResponseBodyLimit, formatTime(cfg.UpdatedAt))
			for _, e := range cfg.Exclusions {
				path := e.Path
				if path == "" {
					path = "(every path)"
				}
				fmt.Fprintf(w, "exclusion %s      rule %d, %s\n", e.ID, e.Rule, path)
			}
			for _, r := range cfg.Rules {
				where := "after the CRS"
				if r.BeforeCRS {
					where = "before the CRS"
				}
				fmt.Fprintf(w, "rules %s          %s, %d bytes, %s\n", r.ID, r.Name, len(r.Text), where)
			}
			return nil
		},
	}
	api.register(cmd)
	outputFlag(cmd, &output)
	return cmd
}

func newWAFListCmd(g *Env) *cobra.Command {
	return listCmd(g, &cobra.Command{
		Use:   "list",
		Short: "List the hostnames with a WAF setting",
		Args:  ExactArgs(0, "no arguments"),
	}, func(ctx context.Context, c *control.Client, _ []string) ([]control.WAFConfig, error) {
		return c.ListWAF(ctx)
	}, listing[control.WAFConfig]{"No WAF settings.", "HOSTNAME\tMODE\tPARANOIA\tTHRESHOLDS\tEXCLUSIONS\tRULES",
		func(c control.WAFConfig) []any {
			return []any{c.Hostname, c.Mode, c.Paranoia, fmt.Sprintf("%d/%d", c.InboundThreshold, c.OutboundThreshold), len(c.Exclusions), len(c.Rules)}
		}})
}

func newWAFDeleteCmd(g *Env) *cobra.Command {
	return recordCmd(g, &cobra.Command{
		Use:   "delete HOSTNAME|'*'",
		Short: "Delete a hostname's WAF setting (it then has '*''s, if any)",
		Args:  ExactArgs(1, "a HOSTNAME or '*'"),
	}, (*control.Client).DeleteWAF, "Deleted the WAF setting of %s")
}

func newWAFExcludeCmd(g *Env) *cobra.Command {
	var (
		api          apiFlags
		rule         int
		path, remove string
	)
	cmd := &cobra.Command{
		Use:   "exclude HOSTNAME|'*' --rule ID [--path REGEX]",
		Short: "Turn a rule off for a hostname (for false positives), on every path or those --path matches",
		Args:  ExactArgs(1, "a HOSTNAME or '*'"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := api.apiClient(g.Home)
			if err != nil {
				return err
			}
			if remove != "" {
				if cmd.Flags().Changed("rule") || path != "" {
					return fmt.Errorf("%s: --remove goes without --rule and --path", cmdPath(cmd))
				}
				if _, err := c.DeleteWAFExclusion(cmd.Context(), args[0], remove); err != nil {
					return cmdErr(cmd, err)
				}
				fmt.Fprintf(g.Stdout, "Removed exclusion %s of %s\n", remove, args[0])
				return nil
			}
			if !cmd.Flags().Changed("rule") {
				return fmt.Errorf("%s: --rule ID is required", cmdPath(cmd))
			}
			cfg, err := c.AddWAFExclusion(cmd.Context(), args[0], control.WAFExclusion{Rule: rule, Path: path})
			if err != nil {
				return cmdErr(cmd, err)
			}
			e := cfg.Exclusions[len(cfg.Exclusions)-1]
			fmt.Fprintf(g.Stdout, "Excluded rule %d on %s (exclusion %s)\n", e.Rule, args[0], e.ID)
			return nil
		},
	}
	api.register(cmd)
	cmd.Flags().IntVar(&rule, "rule", 0, "the rule ID to turn off")
	cmd.Flags().StringVar(&path, "path", "", "only for paths this regular expression matches")
	cmd.Flags().StringVar(&remove, "remove", "", "remove the exclusion with this ID (see adit waf show)")
	return cmd
}

func newWAFRulesCmd(g *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "The operator's own SecLang rules of a hostname",
		Args:  noArgsGroup,
	}
	var (
		addAPI    apiFlags
		file      string
		beforeCRS bool
	)
	add := &cobra.Command{
		Use:   "add HOSTNAME|'*' --file custom.conf [--before-crs]",
		Short: "Add SecLang rules (after the CRS; --before-crs for setup rules such as a SecAction setting tx. variables)",
		Args:  ExactArgs(1, "a HOSTNAME or '*'"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return fmt.Errorf("%s: --file is required", cmdPath(cmd))
			}
			text, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("%s: %w", cmdPath(cmd), err)
			}
			c, err := addAPI.apiClient(g.Home)
			if err != nil {
				return err
			}
			cfg, err := c.AddWAFRules(cmd.Context(), args[0], control.WAFRules{Name: filepath.Base(file), Text: string(text), BeforeCRS: beforeCRS})
			if err != nil {
				return cmdErr(cmd, err)
			}
			r := cfg.Rules[len(cfg.Rules)-1]
			fmt.Fprintf(g.Stdout, "Added rules %s (%s) to %s\n", r.ID, r.Name, args[0])
			return nil
		},
	}
	addAPI.register(add)
	add.Flags().StringVar(&file, "file", "", "the SecLang file")
	add.Flags().BoolVar(&beforeCRS, "before-crs", false, "load them before the CRS (setup rules)")
	var delAPI apiFlags
	del := &cobra.Command{
		Use:   "delete HOSTNAME|'*' ID",
		Short: "Delete rules by ID (see adit waf show)",
		Args:  ExactArgs(2, "a HOSTNAME or '*' and an ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := delAPI.apiClient(g.Home)
			if err != nil {
				return err
			}
			if _, err := c.DeleteWAFRules(cmd.Context(), args[0], args[1]); err != nil {
				return cmdErr(cmd, err)
			}
			fmt.Fprintf(g.Stdout, "Deleted rules %s of %s\n", args[1], args[0])
			return nil
		},
	}
	delAPI.register(del)
	cmd.AddCommand(add, del)
	return cmd
}

func newRateLimitCmd(g *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ratelimit",
		Short: "Rate limits per hostname (counted per edge, over a sliding window)",
		Long: `Limit how many requests one client sends to a hostname. A client over the
limit gets 429 with Retry-After until --timeout ends; others are unaffected.
Counters are per edge.

  adit ratelimit add app.example.com --requests 100 --period 1m
  adit ratelimit add app.example.com --requests 5 --period 1m --path '^/login' --method POST --timeout 10m
  adit ratelimit list
  adit ratelimit delete ID`,
		Args: noArgsGroup,
	}
	var (
		api                  apiFlags
		requests             int
		period, timeout      time.Duration
		path, method, by, ac string
		output               string
	)
	add := &cobra.Command{
		Use:   "add HOSTNAME|'*' --requests N --period 1m",
		Short: "Add a rate limit",
		Args:  ExactArgs(1, "a HOSTNAME or '*'"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			p, err := seconds("period", period)
			if err != nil {
				return fmt.Errorf("%s: %w", cmdPath(cmd), err)
			}
			to, err := seconds("timeout", timeout)
			if err != nil {
				return fmt.Errorf("%s: %w", cmdPath(cmd), err)
			}
			c, err := api.apiClient(g.Home)
			if err != nil {
				return err
			}
			l, err := c.AddRateLimit(cmd.Context(), control.RateLimit{Hostname: args[0], Requests: requests, Period: p,
				Path: path, Method: method, By: by, Action: ac, Timeout: to})
			if err != nil {
				return cmdErr(cmd, err)
			}
			if output == "json" {
				return writeJSON(g.Stdout, l)
			}
			fmt.Fprintf(g.Stdout, "Added rate limit %s: %s, %d requests per %s by %s (%s)\n", l.ID, l.Hostname, l.Requests, l.Period.Duration(), l.By, l.Action)
			return nil
		},
	}
	api.register(add)
	outputFlag(add, &output)
	fl := add.Flags()
	fl.IntVar(&requests, "requests", 0, "requests a client may send per --period")
	fl.DurationVar(&period, "period", time.Minute, "the window (1s to 24h)")
	fl.StringVar(&path, "path", "", "count only requests whose path this regular expression matches")
	fl.StringVar(&method, "method", "", "count only requests of this method")
	fl.StringVar(&by, "by", control.ByIP, "what a client is: ip, header:NAME or access-email")
	fl.StringVar(&ac, "action", control.LimitBlock, "block (429) or log")
	fl.DurationVar(&timeout, "timeout", 0, "how long a client over the limit stays blocked (default: until the window has room)")

	list := listCmd(g, &cobra.Command{
		Use:   "list [HOSTNAME|'*']",
		Short: "List the rate limits",
		Args:  cobra.MaximumNArgs(1),
	}, func(ctx context.Context, c *control.Client, args []string) ([]control.RateLimit, error) {
		return c.ListRateLimits(ctx, hostArg(args))
	}, listing[control.RateLimit]{"No rate limits.", "ID\tHOSTNAME\tLIMIT\tBY\tPATH\tMETHOD\tACTION\tTIMEOUT",
		func(l control.RateLimit) []any {
			return []any{l.ID, l.Hostname, fmt.Sprintf("%d/%s", l.Requests, l.Period.Duration()), l.By,
				orDash(l.Path), orDash(l.Method), l.Action, l.Timeout.Duration()}
		}})
	del := recordCmd(g, &cobra.Command{Use: "delete ID", Short: "Delete a rate limit", Args: ExactArgs(1, "an ID")},
		(*control.Client).DeleteRateLimit, "Deleted rate limit %s")
	cmd.AddCommand(add, list, del)
	return cmd
}

func newIPRuleCmd(g *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ip-rule",
		Short: "Allow or deny client addresses per hostname, or for all ('*')",
		Long: `IP rules are checked before anything else. For an address, the matching rule
with the longest prefix decides (allow wins a tie); a hostname's own rules
come before '*''s. '*' deny rules refuse the connection itself.

  adit ip-rule add app.example.com --allow 10.0.0.0/8
  adit ip-rule add app.example.com --deny 0.0.0.0/0
  adit ip-rule add --deny 192.0.2.0/24 --note 'scanner'     # '*'
  adit ip-rule list
  adit ip-rule delete ID`,
		Args: noArgsGroup,
	}
	var (
		api               apiFlags
		allow, deny, note string
		output            string
	)
	add := &cobra.Command{
		Use:   "add [HOSTNAME|'*'] --allow|--deny CIDR [--note TEXT]",
		Short: "Add an IP rule",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			r := control.IPRule{Hostname: control.AllHosts, Note: note}
			if len(args) == 1 {
				r.Hostname = args[0]
			}
			switch {
			case (allow == "") == (deny == ""):
				return fmt.Errorf("%s: want one of --allow CIDR or --deny CIDR", cmdPath(cmd))
			case allow != "":
				r.Action, r.CIDR = control.IPAllow, allow
			default:
				r.Action, r.CIDR = control.IPDeny, deny
			}
			c, err := api.apiClient(g.Home)
			if err != nil {
				return err
			}
			r, err = c.AddIPRule(cmd.Context(), r)
			if err != nil {
				return cmdErr(cmd, err)
			}
			if output == "json" {
				return writeJSON(g.Stdout, r)
			}
			fmt.Fprintf(g.Stdout, "Added ip rule %s: %s %s for %s\n", r.ID, r.Action, r.CIDR, r.Hostname)
			return nil
		},
	}
	api.register(add)
	outputFlag(add, &output)
	add.Flags().StringVar(&allow, "allow", "", "allow this address or prefix")
	add.Flags().StringVar(&deny, "deny", "", "deny this address or prefix")
	add.Flags().StringVar(&note, "note", "", "a note for people")

	list := listCmd(g, &cobra.Command{
		Use:   "list [HOSTNAME|'*']",
		Short: "List the IP rules",
		Args:  cobra.MaximumNArgs(1),
	}, func(ctx context.Context, c *control.Client, args []string) ([]control.IPRule, error) {
		return c.ListIPRules(ctx, hostArg(args))
	}, listing[control.IPRule]{"No ip rules.", "ID\tHOSTNAME\tACTION\tCIDR\tNOTE\tCREATED",
		func(r control.IPRule) []any {
			return []any{r.ID, r.Hostname, r.Action, r.CIDR, strconv.Quote(r.Note), formatTime(r.CreatedAt)}
		}})
	del := recordCmd(g, &cobra.Command{Use: "delete ID", Short: "Delete an ip rule", Args: ExactArgs(1, "an ID")},
		(*control.Client).DeleteIPRule, "Deleted ip rule %s")
	cmd.AddCommand(add, list, del)
	return cmd
}

// hostArg is the optional HOSTNAME argument of a list command ("": all).
func hostArg(args []string) string {
	if len(args) == 1 {
		return args[0]
	}
	return ""
}
