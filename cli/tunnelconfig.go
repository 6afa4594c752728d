package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/control"
)

// Remotely-managed tunnels: the tunnel's configuration kept by the edge
// (`tunnel ingress set|get|history|rollback`, `tunnel publish|unpublish`),
// which connectors started without a config file run.

func newIngressSetCmd(g *Env) *cobra.Command {
	var (
		api  apiFlags
		file string
	)
	cmd := &cobra.Command{
		Use:   "set NAME|UUID --file config.yml",
		Short: "Store a new version of the tunnel's configuration on the edge",
		Long: `Store config.yml's ingress rules and originRequest options as the next version
of the tunnel's configuration on the edge. Every connector of the tunnel that
runs without a local config file applies it within seconds, without a restart.

The edge validates it exactly as 'adit tunnel ingress validate' does (same
messages, same line numbers) and refuses it whole if it is invalid. Settings
of the connector process (protocol, metrics, ...) are not part of it.`,
		Args: ExactArgs(1, "a tunnel NAME or UUID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return fmt.Errorf("%s: --file is required", cmdPath(cmd))
			}
			doc, err := readConfigFile(file)
			if err != nil {
				return fmt.Errorf("ingress set: %w", err)
			}
			c, err := api.apiClient(g.Home)
			if err != nil {
				return err
			}
			tc, err := c.SetTunnelConfig(cmd.Context(), args[0], control.TunnelConfigRequest{YAML: string(doc)})
			if errors.Is(err, control.ErrInvalid) {
				// The validator's message, as `tunnel ingress validate` prints it.
				return fmt.Errorf("ingress set: %s: %s", file, strings.TrimPrefix(err.Error(), "control: "))
			}
			if err != nil {
				return fmt.Errorf("ingress set: %s: %w", file, apiError(err))
			}
			fmt.Fprintf(g.Stdout, "Stored version %d of tunnel %s's configuration (%d rules).\n", tc.Version, args[0], tc.Rules)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "the config.yml to store (- for standard input)")
	api.register(cmd)
	return cmd
}

// readConfigFile reads path ("-": standard input), at most 1 MiB.
func readConfigFile(path string) ([]byte, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	return io.ReadAll(io.LimitReader(r, 1<<20))
}

func newIngressGetCmd(g *Env) *cobra.Command {
	var (
		api     apiFlags
		version int64
		output  string
	)
	cmd := &cobra.Command{
		Use:   "get NAME|UUID [--version N] [-o yaml|json]",
		Short: "Print the tunnel's configuration held by the edge",
		Long: `Print a version of the tunnel's configuration (the newest without --version):
as YAML (the default, as it was stored), or as JSON in the shape of Cloudflare's
tunnel configurations API. Connectors that could not apply it are listed after
it, with the reason.`,
		Args: ExactArgs(1, "a tunnel NAME or UUID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "yaml" && output != "json" {
				return fmt.Errorf("--output %q: want yaml or json", output)
			}
			c, err := api.apiClient(g.Home)
			if err != nil {
				return err
			}
			tc, err := c.GetTunnelConfig(cmd.Context(), args[0], version)
			if err != nil {
				return fmt.Errorf("ingress get: %w", apiError(err))
			}
			t, err := getTunnel(cmd.Context(), c, args[0])
			if err != nil {
				return fmt.Errorf("ingress get: %w", err)
			}
			if output == "json" {
				return writeJSON(g.Stdout, struct {
					control.TunnelConfig
					Connections []control.Connection `json:"connections"`
				}{tc, append([]control.Connection{}, t.Connections...)})
			}
			fmt.Fprintf(g.Stdout, "# tunnel %s, configuration version %d (%s, %s)\n", t.Name, tc.Version, tc.Change, formatTime(tc.CreatedAt))
			for _, cn := range t.Connections {
				if cn.ConfigError != "" {
					fmt.Fprintf(g.Stdout, "# connector %s (connection %d) runs version %d: version %d not applied: %s\n",
						cn.ConnectorID, cn.Index, cn.ConfigVersion, cn.ConfigFailedVersion, oneLineText(cn.ConfigError))
				}
			}
			fmt.Fprint(g.Stdout, tc.YAML)
			if !strings.HasSuffix(tc.YAML, "\n") {
				fmt.Fprintln(g.Stdout)
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&version, "version", 0, "the version to print (default: the newest)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: yaml (default) or json")
	api.register(cmd)
	return cmd
}

func oneLineText(s string) string { return strings.ReplaceAll(s, "\n", " ") }

func newIngressHistoryCmd(g *Env) *cobra.Command {
	var (
		api    apiFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "history NAME|UUID",
		Short: "List the kept versions of the tunnel's configuration, newest first",
		Args:  ExactArgs(1, "a tunnel NAME or UUID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := api.apiClient(g.Home)
			if err != nil {
				return err
			}
			hist, err := c.TunnelConfigHistory(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("ingress history: %w", apiError(err))
			}
			return printList(g.Stdout, output, hist, fmt.Sprintf("Tunnel %s has no remote configuration.", args[0]), "VERSION\tCREATED\tRULES\tCHANGE",
				func(h control.TunnelConfig) []any {
					return []any{h.Version, formatTime(h.CreatedAt), h.Rules, h.Change}
				})
		},
	}
	api.register(cmd)
	outputFlag(cmd, &output)
	return cmd
}

func newIngressRollbackCmd(g *Env) *cobra.Command {
	var (
		api     apiFlags
		version int64
	)
	cmd := &cobra.Command{
		Use:   "rollback NAME|UUID --version N",
		Short: "Make an earlier version of the tunnel's configuration the newest",
		Args:  ExactArgs(1, "a tunnel NAME or UUID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if version < 1 {
				return fmt.Errorf("%s: --version N is required (see `adit tunnel ingress history`)", cmdPath(cmd))
			}
			c, err := api.apiClient(g.Home)
			if err != nil {
				return err
			}
			tc, err := c.RollbackTunnelConfig(cmd.Context(), args[0], version)
			if err != nil {
				return fmt.Errorf("ingress rollback: %w", apiError(err))
			}
			fmt.Fprintf(g.Stdout, "Stored version %d of tunnel %s's configuration: the content of version %d.\n", tc.Version, args[0], version)
			return nil
		},
	}
	cmd.Flags().Int64Var(&version, "version", 0, "the version to go back to")
	api.register(cmd)
	return cmd
}

func newTunnelPublishCmd(g *Env) *cobra.Command {
	var (
		api  apiFlags
		path string
	)
	cmd := &cobra.Command{
		Use:   "publish NAME|UUID HOSTNAME SERVICE [--path REGEX]",
		Short: "Serve a public hostname from the tunnel: route it and add its rule",
		Long: `Route HOSTNAME to the tunnel and add the rule "HOSTNAME [path] → SERVICE" in
front of the catch-all of the tunnel's configuration on the edge, as a new
version (a tunnel without one gets one ending in http_status:404). Connectors
running without a local config file serve it within seconds.

  adit tunnel publish web app.example.com http://localhost:8000
  adit tunnel publish web app.example.com http://localhost:9000 --path '^/api/'`,
		Args: ExactArgs(3, "a tunnel NAME or UUID, a HOSTNAME and a SERVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := api.apiClient(g.Home)
			if err != nil {
				return err
			}
			tc, err := c.Publish(cmd.Context(), args[0], control.PublishRequest{Hostname: args[1], Service: args[2], Path: path})
			if err != nil {
				return fmt.Errorf("publish: %w", apiError(err))
			}
			fmt.Fprintf(g.Stdout, "Published %s on tunnel %s: configuration version %d.\n", args[1], args[0], tc.Version)
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "path", "", "serve only paths matching this regexp")
	api.register(cmd)
	return cmd
}

func newTunnelUnpublishCmd(g *Env) *cobra.Command {
	var api apiFlags
	cmd := &cobra.Command{
		Use:   "unpublish NAME|UUID HOSTNAME",
		Short: "Undo publish: remove the hostname's rules and its route",
		Args:  ExactArgs(2, "a tunnel NAME or UUID and a HOSTNAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := api.apiClient(g.Home)
			if err != nil {
				return err
			}
			tc, err := c.Unpublish(cmd.Context(), args[0], args[1])
			if err != nil {
				return fmt.Errorf("unpublish: %w", apiError(err))
			}
			fmt.Fprintf(g.Stdout, "Unpublished %s from tunnel %s: configuration version %d.\n", args[1], args[0], tc.Version)
			return nil
		},
	}
	api.register(cmd)
	return cmd
}

// configState says which remote configuration a connection runs, for
// `tunnel info`.
func configState(cn control.Connection) string {
	switch {
	case cn.ConfigLocal:
		return "local file"
	case cn.ConfigError != "":
		return "v" + strconv.FormatInt(cn.ConfigVersion, 10) + " (v" + strconv.FormatInt(cn.ConfigFailedVersion, 10) + " failed)"
	case cn.ConfigVersion > 0:
		return "v" + strconv.FormatInt(cn.ConfigVersion, 10)
	}
	return "-"
}
