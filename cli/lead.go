package cli

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/credentials"
	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/ingress"
)

// edgeFlags are `adit edge`'s flags.
type edgeFlags struct {
	cfg           edge.Config
	etcdEndpoints []string
}

func newEdgeCmd(g *globals) *cobra.Command {
	var f edgeFlags
	cmd := &cobra.Command{
		Use:   "edge",
		Short: "Run an edge: the public listener, the tunnel listener and the control API",
		Long: `Run an adit edge. Connectors dial its tunnel address; the public HTTP listener
routes each request by hostname to a tunnel. State lives in an etcd server
embedded in the edge (data in --data-dir), or in --etcd-endpoints.

On first start the edge creates its CA and certificate and an admin API token
in --data-dir, and prints the exact 'adit login' command to use.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runEdge(cmd.Context(), g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.cfg.DataDir, "data-dir", filepath.Join(credentials.Home(), "edge"), "directory for etcd data, certificates and the admin token")
	fl.StringVar(&f.cfg.HTTPAddr, "http-addr", ":8080", "public HTTP listen address (port 0 picks a free port)")
	fl.StringVar(&f.cfg.TunnelAddr, "tunnel-addr", ":7844", "UDP address connectors dial (QUIC)")
	fl.StringVar(&f.cfg.APIAddr, "api-addr", "127.0.0.1:7845", "control API listen address (HTTPS)")
	fl.StringSliceVar(&f.cfg.EtcdEndpoints, "etcd-endpoints", nil, "external etcd endpoints (comma-separated); default: an embedded etcd")
	fl.StringVar(&f.cfg.TLSCertFile, "tls-cert", "", "certificate (PEM) for the tunnel and API listeners, instead of the edge's own CA")
	fl.StringVar(&f.cfg.TLSKeyFile, "tls-key", "", "key (PEM) for --tls-cert")
	fl.StringSliceVar(&f.cfg.PublicNames, "public-name", nil, "DNS name or IP connectors use to reach this edge (repeatable; default localhost)")
	fl.StringVar(&f.cfg.AdvertiseAddr, "advertise", "", "host:port written into credentials files for connectors to dial (default: first public name and the tunnel port)")
	fl.StringVar(&f.cfg.NodeName, "node-name", "", "name of this edge node (default: host name and a random suffix)")
	addEdgeOpsFlags(fl, &f.cfg) // ready.go: --metrics and limits
	return cmd
}

func runEdge(ctx context.Context, g *globals, f edgeFlags) error {
	f.cfg.Logger = g.Logger()
	srv, err := edge.Start(ctx, f.cfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	out := g.Stdout
	fmt.Fprintf(out, "adit edge %s is serving\n", srv.Node())
	fmt.Fprintf(out, "  public HTTP  %s\n", srv.HTTPAddr())
	fmt.Fprintf(out, "  tunnels      %s (udp, quic) and %s (tcp, websocket)\n", srv.TunnelAddr(), srv.TunnelTCPAddr())
	fmt.Fprintf(out, "  API          %s\n", srv.APIURL())
	if a := srv.MetricsAddr(); a != nil {
		fmt.Fprintf(out, "  metrics      http://%s/metrics\n", a)
	}
	if srv.CreatedAdminToken() {
		fmt.Fprintf(out, "An admin API token was written to %s (mode 0600).\n", srv.AdminTokenFile())
	}
	fmt.Fprintf(out, "Log in with:\n  %s\n", srv.LoginCommand())
	<-ctx.Done()
	fmt.Fprintln(out, "adit edge: shutting down")
	return nil
}

// runFlags are `adit tunnel run`'s flags.
type runFlags struct {
	config          string
	url             string
	token           string
	tokenFile       string
	credentialsFile string
	protocol        string
	haConnections   int
	edgeAddrs       []string
	serverName      string
	gracePeriod     time.Duration
	metricsAddr     string
}

func newTunnelRunCmd(g *globals) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [NAME|UUID]",
		Short: "Run a connector for a tunnel: dial the edge and serve its requests",
		Long: `Run a connector. It dials out to the edge (nothing listens on this machine),
holds --ha-connections connections, and hands each request to the origin the
ingress rules choose: --url for a single origin, or the ingress rules of
--config (cloudflared's config.yml format).

The tunnel's credentials come from --token (or --token-file, or the
ADIT_TUNNEL_TOKEN environment variable), from --credentials-file, from the
config's credentials-file, or from $ADIT_HOME/<UUID>.json for the tunnel
named by the argument or the config's 'tunnel' key.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return fmt.Errorf("%s: want at most one tunnel NAME or UUID", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := ""
			if len(args) == 1 {
				ref = args[0]
			}
			return runTunnel(cmd.Context(), g, f, ref)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "config.yml with ingress rules (cloudflared format)")
	fl.StringVar(&f.url, "url", "", "serve every request from this origin (e.g. http://localhost:8000)")
	fl.StringVar(&f.token, "token", "", "tunnel token (prefer --token-file or ADIT_TUNNEL_TOKEN: arguments are visible to other users)")
	fl.StringVar(&f.tokenFile, "token-file", "", "file holding the tunnel token")
	fl.StringVar(&f.credentialsFile, "credentials-file", "", "tunnel credentials file")
	fl.StringVar(&f.protocol, "protocol", "auto", "transport to the edge: auto (QUIC, falling back to WebSocket over TCP when UDP is blocked), quic or websocket")
	fl.IntVar(&f.haConnections, "ha-connections", 4, "connections to hold open to the edge")
	fl.StringSliceVar(&f.edgeAddrs, "edge", nil, "edge tunnel address(es) host:port, instead of those in the credentials")
	fl.StringVar(&f.serverName, "edge-server-name", "", "TLS name to verify on the edge certificate (default: the edge address's host)")
	fl.DurationVar(&f.gracePeriod, "grace-period", 30*time.Second, "how long requests in flight may finish after SIGINT/SIGTERM")
	fl.StringVar(&f.metricsAddr, "metrics", "", "serve /metrics, /ready and /healthcheck on host:port (port 0 picks one; default: off)")
	return cmd
}

func runTunnel(ctx context.Context, g *globals, f runFlags, ref string) error {
	log := g.Logger()
	var cfg *ingress.Config
	var err error
	if f.config == "" && f.url == "" {
		f.config = findConfig(g.Home) // cloudflared's search; "" if none
	}
	if f.config != "" {
		if cfg, err = ingress.Load(f.config); err != nil {
			return err
		}
	}
	var ing *ingress.Ingress
	switch {
	case f.url != "":
		ing, err = ingress.FromURL(f.url)
	case cfg != nil:
		ing, err = ingress.New(cfg) // ingress rules, or the legacy url/hello-world
	default:
		return fmt.Errorf("tunnel run: no origin: pass --url URL or --config with ingress rules (no config file in %s)", strings.Join(configCandidates(g.Home), ", "))
	}
	if err != nil {
		return err
	}
	if ref == "" && cfg != nil {
		ref = cfg.Tunnel
	}
	creds, err := loadRunCredentials(ctx, g, f, cfg, ref)
	if err != nil {
		return err
	}
	edges := f.edgeAddrs
	if len(edges) == 0 {
		edges = creds.EdgeAddrs
	}
	if len(edges) == 0 {
		return fmt.Errorf("tunnel run: the credentials for tunnel %s name no edge address; pass --edge HOST:PORT", creds.TunnelID)
	}
	c, err := connector.New(connector.Config{
		TunnelID:      creds.TunnelID,
		Secret:        creds.TunnelSecret,
		EdgeAddrs:     edges,
		EdgeCA:        []byte(creds.EdgeCA),
		ServerName:    f.serverName,
		Ingress:       ing,
		HAConnections: f.haConnections,
		Protocol:      f.protocol,
		GracePeriod:   f.gracePeriod,
		MetricsAddr:   f.metricsAddr,
		Logger:        log,
	})
	if err != nil {
		return err
	}
	if f.url == "" {
		stop, err := watchConfig(ctx, log, f.config, cfg, c) // live reload, SIGHUP
		if err != nil {
			return err
		}
		defer stop()
	}
	log.Info("connector: starting", "tunnel", creds.TunnelID, "connector", c.ID(), "edge", edges, "ha_connections", f.haConnections)
	return c.Run(ctx)
}

// loadRunCredentials finds the tunnel's credentials: a token, a credentials
// file, or $ADIT_HOME/<UUID>.json for the tunnel named by ref.
func loadRunCredentials(ctx context.Context, g *globals, f runFlags, cfg *ingress.Config, ref string) (*credentials.File, error) {
	tok, err := credentials.TokenFromSources(f.token, f.tokenFile, os.Getenv)
	if err != nil {
		return nil, err
	}
	if tok != "" {
		return credentials.ParseToken(tok)
	}
	path := f.credentialsFile
	if path == "" && cfg != nil {
		path = cfg.CredentialsFile
	}
	if path == "" {
		if ref == "" {
			return nil, errors.New("tunnel run: which tunnel? pass NAME|UUID, --token-file, --credentials-file, or a config with 'tunnel'")
		}
		id := ref
		if _, err := uuid.Parse(ref); err != nil {
			api, err := (&apiFlags{}).client(g.Home)
			if err != nil {
				return nil, fmt.Errorf("tunnel run: %q is not a UUID, and resolving the name needs the API: %w", ref, err)
			}
			t, err := api.GetTunnel(ctx, ref)
			if err != nil {
				return nil, fmt.Errorf("tunnel run: tunnel %q: %w", ref, err)
			}
			id = t.ID
		}
		path = credentials.CredentialsPath(g.Home, id)
	}
	return credentials.Load(path)
}

func newQuickstartCmd(g *globals) *cobra.Command {
	var (
		url      string
		httpAddr string
		dataDir  string
	)
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "Start an edge and a connected tunnel on this machine and print its URL",
		Long: `Start, in one process, an edge with an embedded etcd, create a tunnel, route a
random name under .localhost to it, connect a connector over QUIC on loopback
to --url (or to the built-in hello_world origin), and print the URL.
Ctrl-C stops everything. Data lives in a temporary directory unless --data-dir.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runQuickstart(cmd.Context(), g, url, httpAddr, dataDir)
		},
	}
	cmd.Flags().StringVar(&url, "url", "hello_world", "origin to expose (e.g. http://localhost:3000)")
	cmd.Flags().StringVar(&httpAddr, "http-addr", ":8080", "public HTTP listen address")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "edge data directory (default: a temporary one, removed on exit)")
	return cmd
}

func runQuickstart(ctx context.Context, g *globals, url, httpAddr, dataDir string) error {
	log := g.Logger()
	ing, err := ingress.FromURL(url)
	if err != nil {
		return err
	}
	if dataDir == "" {
		dataDir, err = os.MkdirTemp("", "adit-quickstart-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dataDir)
	}
	srv, err := edge.Start(ctx, edge.Config{
		DataDir:    dataDir,
		HTTPAddr:   httpAddr,
		TunnelAddr: "127.0.0.1:0",
		APIAddr:    "127.0.0.1:0",
		Logger:     log,
	})
	if err != nil {
		return err
	}
	defer srv.Close()

	name := randomName()
	secret := make([]byte, 32)
	rand.Read(secret)
	svc := srv.Service()
	t, err := svc.CreateTunnel(ctx, "quickstart-"+name, secret)
	if err != nil {
		return err
	}
	hostname := name + ".localhost"
	if _, err := svc.RouteDNS(ctx, t.ID, hostname, true); err != nil {
		return err
	}
	srv.Sync(ctx)
	c, err := connector.New(connector.Config{
		TunnelID:    t.ID,
		Secret:      secret,
		EdgeAddrs:   []string{srv.TunnelAddr().String()},
		EdgeCA:      srv.CAPEM(),
		ServerName:  "localhost",
		Ingress:     ing,
		GracePeriod: 5 * time.Second,
		Logger:      log,
	})
	if err != nil {
		return err
	}
	runErr := make(chan error, 1)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { runErr <- c.Run(cctx) }()
	select {
	case <-c.Ready():
	case err := <-runErr:
		return fmt.Errorf("quickstart: connector stopped: %w", err)
	case <-ctx.Done():
		return nil
	}
	_, port, _ := net.SplitHostPort(srv.HTTPAddr().String())
	publicURL := "http://" + net.JoinHostPort(hostname, port)
	fmt.Fprintf(g.Stdout, "\nYour quickstart tunnel is ready:\n\n    %s\n\n", publicURL)
	fmt.Fprintf(g.Stdout, "It serves %s through tunnel %s over QUIC. Try:\n    curl %s\n", url, t.ID, publicURL)
	fmt.Fprintln(g.Stdout, "(*.localhost resolves to this machine; if yours does not, use: curl -H 'Host: "+hostname+"' http://127.0.0.1:"+port+")")
	fmt.Fprintln(g.Stdout, "Press Ctrl-C to stop.")
	select {
	case <-ctx.Done():
	case err := <-runErr:
		return err
	}
	cancel()
	<-runErr
	return nil
}

var (
	adjectives = []string{"brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "kind", "lively", "merry", "nimble", "proud", "quick", "silly", "witty", "zesty"}
	animals    = []string{"otter", "badger", "falcon", "heron", "lynx", "marten", "newt", "owl", "panda", "quail", "robin", "seal", "tapir", "vole", "wombat", "yak"}
)

// randomName is an adjective-animal-NNNN name, easy to read and type.
func randomName() string {
	pick := func(list []string) string {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(list))))
		return list[n.Int64()]
	}
	n, _ := rand.Int(rand.Reader, big.NewInt(10000))
	return fmt.Sprintf("%s-%s-%04d", pick(adjectives), pick(animals), n.Int64())
}
