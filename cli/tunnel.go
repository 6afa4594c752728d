package cli

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/credentials"
	"github.com/google/uuid"
	"github.com/spf13/cobra"
)

func newTunnelCmd(g *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tunnel",
		Short: "Create, run and manage tunnels",
		Args:  noArgsGroup,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(
		newTunnelCreateCmd(g),
		newTunnelListCmd(g),
		newTunnelInfoCmd(g),
		newTunnelRouteCmd(g),
		newTunnelTokenCmd(g),
		newTunnelDeleteCmd(g),
		newTunnelCleanupCmd(g),
		newTunnelRunCmd(g),
		newTunnelReadyCmd(g), // ready.go
		newTunnelIngressCmd(g),
		newTunnelPublishCmd(g), newTunnelUnpublishCmd(g), // tunnelconfig.go
	)
	return cmd
}

// outputFlag registers -o/--output and returns a check for its value.
func outputFlag(cmd *cobra.Command, out *string) {
	cmd.Flags().StringVarP(out, "output", "o", "", `output format: "" for text or "json"`)
}

func checkOutput(out string) error {
	if out != "" && out != "json" {
		return fmt.Errorf("--output %q: want json or nothing", out)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// accountTag derives the cloudflared-style AccountTag from the edge CA, so
// every tunnel of one edge fleet shares it.
func accountTag(caPEM string) string {
	sum := sha256.Sum256([]byte(caPEM))
	return hex.EncodeToString(sum[:])[:32]
}

func newTunnelCreateCmd(g *Env) *cobra.Command {
	var (
		api      apiFlags
		credPath string
		output   string
	)
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a tunnel and write its credentials file",
		Args:  ExactArgs(1, "a tunnel NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			name := args[0]
			ctx := cmd.Context()
			c, err := api.client(g.Home)
			if err != nil {
				return err
			}
			if credPath != "" {
				if _, err := os.Stat(credPath); err == nil {
					return fmt.Errorf("create: %s already exists; remove it or choose another --credentials-file", credPath)
				}
			}
			info, err := c.EdgeInfo(ctx)
			if err != nil {
				return fmt.Errorf("create: %w", apiError(err))
			}
			secret := make([]byte, 32)
			if _, err := rand.Read(secret); err != nil {
				return fmt.Errorf("create: %w", err)
			}
			t, err := c.CreateTunnel(ctx, name, secret)
			if err != nil {
				if errors.Is(err, control.ErrConflict) {
					return fmt.Errorf("create: a tunnel named %q already exists", name)
				}
				return fmt.Errorf("create: %w", apiError(err))
			}
			path := credPath
			if path == "" {
				path = credentials.CredentialsPath(g.Home, t.ID)
			}
			f := &credentials.File{
				AccountTag:   accountTag(info.CAPEM),
				TunnelID:     t.ID,
				TunnelSecret: secret,
				TunnelName:   t.Name,
				EdgeAddrs:    info.TunnelAddrs,
				EdgeCA:       info.CAPEM,
			}
			if err := f.Save(path); err != nil {
				// Without its secret the new tunnel is useless; take it back.
				if derr := c.DeleteTunnel(context.WithoutCancel(ctx), t.ID, true); derr != nil {
					return fmt.Errorf("create: %w (and deleting the new tunnel %s failed: %v)", err, t.ID, derr)
				}
				return fmt.Errorf("create: %w (tunnel deleted again)", err)
			}
			msg := fmt.Sprintf("Tunnel credentials written to %s. Keep this file secret. To revoke these credentials, delete the tunnel.\n", path)
			if output == "json" {
				fmt.Fprint(g.Stderr, msg)
				return writeJSON(g.Stdout, t)
			}
			fmt.Fprintf(g.Stdout, "%s\nCreated tunnel %s with id %s\n", msg, t.Name, t.ID)
			return nil
		},
	}
	api.register(cmd)
	outputFlag(cmd, &output)
	cmd.Flags().StringVar(&credPath, "credentials-file", "", "where to write the credentials file (default: <home>/<UUID>.json)")
	cmd.Flags().StringVar(&credPath, "cred-file", "", "alias for --credentials-file")
	return cmd
}

// connSummary says where a tunnel is connected: "2xnode-a, 1xnode-b".
func connSummary(conns []control.Connection) string {
	var nodes []string
	count := map[string]int{}
	for _, c := range conns {
		if count[c.EdgeNode] == 0 {
			nodes = append(nodes, c.EdgeNode)
		}
		count[c.EdgeNode]++
	}
	slices.Sort(nodes)
	parts := make([]string, len(nodes))
	for i, n := range nodes {
		parts[i] = fmt.Sprintf("%dx%s", count[n], n)
	}
	return strings.Join(parts, ", ")
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func newTunnelListCmd(g *Env) *cobra.Command {
	var (
		api         apiFlags
		output      string
		showDeleted bool
		name        string
	)
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List tunnels",
		Args:    ExactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := api.client(g.Home)
			if err != nil {
				return err
			}
			ts, err := c.ListTunnels(cmd.Context(), control.ListOptions{Name: name, IncludeDeleted: showDeleted})
			if err != nil {
				return fmt.Errorf("list: %w", apiError(err))
			}
			header := "ID\tNAME\tCREATED\tCONNECTIONS"
			if showDeleted {
				header += "\tDELETED"
			}
			return printList(g.Stdout, output, ts, "No tunnels found.", header, func(t control.Tunnel) []any {
				row := []any{t.ID, t.Name, formatTime(t.CreatedAt), connSummary(t.Connections)}
				if showDeleted {
					deleted := "-"
					if t.DeletedAt != nil {
						deleted = formatTime(*t.DeletedAt)
					}
					row = append(row, deleted)
				}
				return row
			})
		},
	}
	api.register(cmd)
	outputFlag(cmd, &output)
	cmd.Flags().BoolVarP(&showDeleted, "show-deleted", "d", false, "include deleted tunnels")
	cmd.Flags().StringVarP(&name, "name", "n", "", "only the tunnel with this name")
	return cmd
}

// getTunnel resolves NAME|UUID, with an error a person can act on.
func getTunnel(ctx context.Context, c control.API, ref string) (control.Tunnel, error) {
	t, err := c.GetTunnel(ctx, ref)
	if errors.Is(err, control.ErrNotFound) {
		return t, fmt.Errorf("no tunnel %q (see `adit tunnel list`)", ref)
	}
	if err != nil {
		return t, apiError(err)
	}
	return t, nil
}

func newTunnelInfoCmd(g *Env) *cobra.Command {
	var (
		api    apiFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "info NAME|UUID",
		Short: "Show a tunnel and its live connections",
		Args:  ExactArgs(1, "a tunnel NAME or UUID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := api.client(g.Home)
			if err != nil {
				return err
			}
			t, err := getTunnel(cmd.Context(), c, args[0])
			if err != nil {
				return fmt.Errorf("info: %w", err)
			}
			hosts, err := tunnelHostnames(cmd.Context(), c, t.ID) // route.go
			if err != nil {
				return fmt.Errorf("info: %w", apiError(err))
			}
			if output == "json" {
				if hosts == nil {
					hosts = []string{}
				}
				return writeJSON(g.Stdout, struct {
					control.Tunnel
					Hostnames []string `json:"hostnames"`
				}{t, hosts})
			}
			fmt.Fprintf(g.Stdout, "NAME:      %s\nID:        %s\nCREATED:   %s\n", t.Name, t.ID, formatTime(t.CreatedAt))
			if t.DeletedAt != nil {
				fmt.Fprintf(g.Stdout, "DELETED:   %s\n", formatTime(*t.DeletedAt))
			}
			hostList := "-"
			if len(hosts) > 0 {
				hostList = strings.Join(hosts, ", ")
			}
			fmt.Fprintf(g.Stdout, "HOSTNAMES: %s\n", hostList)
			fmt.Fprintln(g.Stdout)
			if len(t.Connections) == 0 {
				fmt.Fprintf(g.Stdout, "Tunnel %s has no active connections.\n", t.Name)
				return nil
			}
			conns := slices.Clone(t.Connections)
			slices.SortFunc(conns, func(a, b control.Connection) int {
				if c := strings.Compare(a.ConnectorID, b.ConnectorID); c != 0 {
					return c
				}
				return a.Index - b.Index
			})
			w := tabwriter.NewWriter(g.Stdout, 0, 0, 3, ' ', 0)
			fmt.Fprintln(w, "CONNECTOR ID\tEDGE\tPROTOCOL\tINDEX\tSINCE\tVERSION\tORIGIN IP\tCONFIG")
			for _, cn := range conns {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", cn.ConnectorID, cn.EdgeNode, cn.Protocol, cn.Index, formatTime(cn.Since), cn.Version, cn.OriginIP, configState(cn))
			}
			if err := w.Flush(); err != nil {
				return err
			}
			for _, cn := range conns { // tunnelconfig.go: what a connector could not apply
				if cn.ConfigError != "" {
					fmt.Fprintf(g.Stdout, "\nConnector %s (connection %d) did not apply configuration version %d: %s\n", cn.ConnectorID, cn.Index, cn.ConfigFailedVersion, oneLineText(cn.ConfigError))
				}
			}
			return nil
		},
	}
	api.register(cmd)
	outputFlag(cmd, &output)
	return cmd
}

func newTunnelRouteCmd(g *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "route",
		Short: "Route traffic to a tunnel",
		Args:  noArgsGroup,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	var (
		api       apiFlags
		overwrite bool
	)
	dns := &cobra.Command{
		Use:   "dns NAME|UUID HOSTNAME",
		Short: "Route a hostname (or *.domain) to a tunnel",
		Args:  ExactArgs(2, "a tunnel NAME or UUID and a HOSTNAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := api.client(g.Home)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			t, err := getTunnel(ctx, c, args[0])
			if err != nil {
				return fmt.Errorf("route dns: %w", err)
			}
			r, err := c.RouteDNS(ctx, t.ID, args[1], overwrite)
			switch {
			case errors.Is(err, control.ErrConflict):
				return fmt.Errorf("route dns: %s is already routed to another tunnel; use --overwrite-dns to move it", args[1])
			case errors.Is(err, control.ErrInvalid):
				return fmt.Errorf("route dns: %w", err)
			case err != nil:
				return fmt.Errorf("route dns: %w", apiError(err))
			}
			fmt.Fprintf(g.Stdout, "Added route %s → tunnel %s\n", r.Hostname, t.ID)
			return nil
		},
	}
	api.register(dns)
	dns.Flags().BoolVarP(&overwrite, "overwrite-dns", "f", false, "move the hostname if another tunnel has it")
	cmd.AddCommand(dns, newTunnelRouteTCPCmd(g), newTunnelRouteListCmd(g), newTunnelRouteDeleteCmd(g)) // route.go, route_tcp.go
	return cmd
}

func newTunnelTokenCmd(g *Env) *cobra.Command {
	var (
		api      apiFlags
		credFile string
	)
	cmd := &cobra.Command{
		Use:   "token NAME|UUID",
		Short: "Print the token a connector can run the tunnel with",
		Long: `Token prints the tunnel's token, built from its credentials file
(--cred-file, else <home>/<UUID>.json). A NAME is resolved through the API; a
UUID is not, so this works offline. Treat the token like the credentials file.`,
		Args: ExactArgs(1, "a tunnel NAME or UUID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := args[0]
			id := ""
			if isUUID(ref) {
				id = ref
			} else if credFile == "" {
				c, err := api.client(g.Home)
				if err != nil {
					return err
				}
				t, err := getTunnel(cmd.Context(), c, ref)
				if err != nil {
					return fmt.Errorf("token: %w", err)
				}
				id = t.ID
			}
			path := credFile
			if path == "" {
				path = credentials.CredentialsPath(g.Home, id)
			}
			f, err := credentials.Load(path)
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("token: no credentials file for tunnel %s at %s; pass --cred-file", ref, path)
				}
				return fmt.Errorf("token: %w", err)
			}
			if id != "" && !strings.EqualFold(f.TunnelID, id) {
				return fmt.Errorf("token: %s is for tunnel %s, not %s", path, f.TunnelID, id)
			}
			if id == "" && f.TunnelName != "" && f.TunnelName != ref {
				return fmt.Errorf("token: %s is for tunnel %s, not %s", path, f.TunnelName, ref)
			}
			tok, err := f.Token()
			if err != nil {
				return fmt.Errorf("token: %w", err)
			}
			fmt.Fprintln(g.Stdout, tok)
			return nil
		},
	}
	api.register(cmd)
	cmd.Flags().StringVar(&credFile, "cred-file", "", "credentials file (default: <home>/<UUID>.json)")
	cmd.Flags().StringVar(&credFile, "credentials-file", "", "alias for --cred-file")
	return cmd
}

func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

func newTunnelDeleteCmd(g *Env) *cobra.Command {
	var (
		api   apiFlags
		force bool
	)
	cmd := &cobra.Command{
		Use:   "delete [-f] NAME|UUID...",
		Short: "Delete tunnels",
		Long: `Delete removes tunnels and their routes. A tunnel with live connections is
refused unless -f is given. A credentials file in the adit home directory is
removed with its tunnel.`,
		Args: minArgs(1, "at least one tunnel NAME or UUID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := api.client(g.Home)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			for _, ref := range args {
				t, err := getTunnel(ctx, c, ref)
				if err != nil {
					return fmt.Errorf("delete: %w", err)
				}
				err = c.DeleteTunnel(ctx, t.ID, force)
				if errors.Is(err, control.ErrTunnelConnected) {
					n := len(t.Connections)
					if n == 0 {
						n = 1 // connected since GetTunnel; count unknown
					}
					return fmt.Errorf("delete: tunnel %s has %d active connection(s); stop them or use -f", ref, n)
				}
				if err != nil {
					return fmt.Errorf("delete: %s: %w", ref, apiError(err))
				}
				fmt.Fprintf(g.Stdout, "Deleted tunnel %s with id %s\n", t.Name, t.ID)
				path := credentials.CredentialsPath(g.Home, t.ID)
				switch err := os.Remove(path); {
				case err == nil:
					fmt.Fprintf(g.Stdout, "Removed credentials file %s\n", path)
				case !errors.Is(err, os.ErrNotExist):
					return fmt.Errorf("delete: tunnel deleted, but its credentials file remains: %w", err)
				}
			}
			return nil
		},
	}
	api.register(cmd)
	cmd.Flags().BoolVarP(&force, "force", "f", false, "delete even if the tunnel has live connections")
	return cmd
}

func newTunnelCleanupCmd(g *Env) *cobra.Command {
	var api apiFlags
	cmd := &cobra.Command{
		Use:   "cleanup NAME|UUID...",
		Short: "Drop the connection records of tunnels (edges then disconnect them)",
		Args:  minArgs(1, "at least one tunnel NAME or UUID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := api.client(g.Home)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			for _, ref := range args {
				t, err := getTunnel(ctx, c, ref)
				if err != nil {
					return fmt.Errorf("cleanup: %w", err)
				}
				if err := c.CleanupTunnel(ctx, t.ID); err != nil {
					return fmt.Errorf("cleanup: %s: %w", ref, apiError(err))
				}
				fmt.Fprintf(g.Stdout, "Cleaned up connections of tunnel %s with id %s\n", t.Name, t.ID)
			}
			return nil
		},
	}
	api.register(cmd)
	return cmd
}
