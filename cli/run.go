package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/credentials"
	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/internal/logs"
	"github.com/adit-dev/adit/internal/procs"
)

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
	edgeZone        string
	region          string
	serverName      string
	gracePeriod     time.Duration
	metricsAddr     string
	logRequests     bool
	logFile         string
	pidFile         string

	// set reports whether the command line gave a flag; a setting of the
	// config file applies only where it did not (runconfig.go).
	set func(name string) bool
}

func newTunnelRunCmd(g *Env) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [NAME|UUID]",
		Short: "Run a connector for a tunnel: dial the edge and serve its requests",
		Long: `Run a connector. It dials out to the edge (nothing listens on this machine),
holds --ha-connections connections, and hands each request to the origin the
ingress rules choose: --url for a single origin, the ingress rules of
--config (cloudflared's config.yml format), or, with neither (and no config
file found), the tunnel's configuration kept by the edge ('adit tunnel
ingress set', 'adit tunnel publish'), applied live as it changes. A
connector with a config file ignores the edge's and says so.

The tunnel's credentials come from --token (or --token-file, or the
ADIT_TUNNEL_TOKEN environment variable), from --credentials-file, from the
config's credentials-file, or from $ADIT_HOME/<UUID>.json for the tunnel
named by the argument or the config's 'tunnel' key.

The config's other top-level settings (protocol, ha-connections,
grace-period, metrics, loglevel, logfile, pidfile) apply where the command
line does not give the flag; a setting adit does not implement (region,
retries, tag, warp-routing, ...) is refused by name with the reason.`,
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
			f.set = cmd.Flags().Changed
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
	fl.IntVar(&f.haConnections, "ha-connections", connector.DefaultHAConnections, "connections to hold open to the edge")
	fl.StringSliceVar(&f.edgeAddrs, "edge", nil, "edge tunnel address(es) host:port, instead of those in the credentials")
	fl.StringVar(&f.edgeZone, "edge-zone", "", "find the edges through the SRV records the fleet publishes for this zone (adit edge --dns-zone), instead of the credentials' addresses; looked up again every 30s while running")
	fl.StringVar(&f.region, "region", "", "prefer the fleet's edges with this region label (adit edge --region); the connections still spread over two edges")
	fl.StringVar(&f.serverName, "edge-server-name", "", "TLS name to verify on the edge certificate (default: the edge address's host)")
	fl.DurationVar(&f.gracePeriod, "grace-period", connector.DefaultGracePeriod, "how long requests in flight may finish after SIGINT/SIGTERM")
	fl.StringVar(&f.metricsAddr, "metrics", "", "serve /metrics, /ready, /healthcheck and /debug/pprof/ on host:port (port 0 picks one; default: off)")
	fl.StringVar(&f.logFile, "logfile", "", "append logs to this file (0600) as well as to stderr")
	fl.BoolVar(&f.logRequests, "log-requests", false, "log each request served at info level, with its request ID (default: debug level)")
	fl.StringVar(&f.pidFile, "pidfile", "", "write the process ID to this file after the first connection; removed at exit")
	return cmd
}

func runTunnel(ctx context.Context, g *Env, f runFlags, ref string) error {
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
	var notes []string
	if cfg != nil {
		if notes, err = applyRunConfig(g, &f, f.config, cfg); err != nil {
			return err
		}
	}
	if f.logFile != "" {
		fh, err := openLogFile(g, f.logFile)
		if err != nil {
			return err
		}
		defer fh.Close()
	}
	log := logs.Component(g.Logger(), "connector")
	for _, n := range notes {
		log.Info(n)
	}
	var ing *ingress.Ingress
	remote := false
	switch {
	case f.url != "":
		ing, err = ingress.FromURL(f.url)
	case cfg != nil:
		ing, err = ingress.New(cfg) // ingress rules, or the legacy url/hello-world
	default:
		// No file, no --url: the rules are the tunnel's configuration on
		// the edge (tunnelconfig.go), as cloudflared's remotely-managed
		// tunnels.
		remote = true
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
	if len(edges) == 0 && f.edgeZone != "" {
		if edges, err = edgesFromZone(ctx, log, nil, f.edgeZone, f.protocol, creds.EdgeAddrs); err != nil { // edgezone.go
			return fmt.Errorf("tunnel run: --edge-zone: %w", err)
		}
	}
	var findEdges func(context.Context) ([]string, error)
	if len(f.edgeAddrs) == 0 && f.edgeZone != "" {
		findEdges = func(ctx context.Context) ([]string, error) { // found again while running: edges join and leave
			return edgesFromZone(ctx, log, nil, f.edgeZone, f.protocol, nil)
		}
	}
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
		FindEdges:     findEdges,
		Region:        f.region,
		EdgeCA:        []byte(creds.EdgeCA),
		ServerName:    f.serverName,
		Ingress:       ing,
		RemoteConfig:  remote,
		LocalConfig:   f.config,
		HAConnections: f.haConnections,
		Protocol:      f.protocol,
		GracePeriod:   f.gracePeriod,
		MetricsAddr:   f.metricsAddr,
		LogRequests:   f.logRequests,
		Logger:        log,
	})
	if err != nil {
		return err
	}
	if remote {
		log.Info("no config file; taking the ingress rules from the edge (adit tunnel ingress set, adit tunnel publish)", "searched", strings.Join(configCandidates(g.Home), ", "))
	}
	if f.url == "" && !remote {
		stop, err := watchConfig(ctx, log, f.config, cfg, c) // live reload, SIGHUP
		if err != nil {
			return err
		}
		defer stop()
	}
	if f.pidFile != "" {
		defer writePIDFile(g, f.pidFile, c)()
	}
	defer notifySystemd(ctx, c, log)() // sdnotify.go
	log.Info("starting", "tunnel", creds.TunnelID, "connector", c.ID(), "edge", edges, "region", f.region, "ha_connections", f.haConnections)
	procs.Adapt(ctx, procs.Config{Logger: log}) // one P while the load is light
	// The metrics listener is the one a connector opens.
	return AddrInUse(c.Run(ctx), "--metrics (or metrics: in the config file)")
}

// loadRunCredentials finds the tunnel's credentials: a token, a credentials
// file, or $ADIT_HOME/<UUID>.json for the tunnel named by ref.
func loadRunCredentials(ctx context.Context, g *Env, f runFlags, cfg *ingress.Config, ref string) (*credentials.File, error) {
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
