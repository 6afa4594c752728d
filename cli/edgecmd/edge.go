// Package edgecmd is the edge's part of the adit command line: `adit edge`
// and `adit quickstart`, which start an edge (and with it an embedded etcd
// server) in the process. It is kept apart from package cli so that a binary
// for private machines (cmd/adit-connector) can have every other command
// without linking the edge.
package edgecmd

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/adit-dev/adit/cli"
	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/credentials"
	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/internal/procs"
)

// Commands returns `edge` and `quickstart`, for cli.Program's Commands.
func Commands() []cli.Command {
	return []cli.Command{newEdgeCmd, newQuickstartCmd}
}

// edgeFlags are `adit edge`'s flags.
type edgeFlags struct {
	cfg   edge.Config
	etcd  etcdFlags  // etcd.go
	https httpsFlags // https.go
	dns   dnsFlags   // dns.go
	fleet fleetFlags // fleet.go
}

func newEdgeCmd(g *cli.Env) *cobra.Command {
	var f edgeFlags
	cmd := &cobra.Command{
		Use:   "edge",
		Short: "Run an edge: the public listener, the tunnel listener and the control API",
		Long: `Run an adit edge. Connectors dial its tunnel address; the public HTTP listener
routes each request by hostname to a tunnel. State lives in an etcd server
embedded in the edge (data in --data-dir), or in --etcd-endpoints.

On first start the edge creates its CA and certificate and an admin API token
in --data-dir, and prints the exact 'adit login' command to use.`,
		Args: cli.ExactArgs(0, "no arguments"),
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
	fl.StringVar(&f.cfg.AdvertiseAddr, "advertise", "", "host:port connectors dial, written into credentials files and the fleet's registry (default: the tunnel port with the first --public-name, else --tunnel-addr's or --peer-addr's host if not a wildcard, else localhost, which the registry does not list)")
	fl.StringVar(&f.cfg.PeerAddr, "peer-addr", "", "UDP address of the peer link other edges of the fleet forward requests over (QUIC, mutual TLS with the fleet's CA; default: the --tunnel-addr host, port 7846, or a free port when --tunnel-addr's port is not 7844; off: none)")
	fl.StringVar(&f.cfg.NodeName, "node-name", "", "name of this edge node (default: the one kept in --data-dir/node-name, made from the host name and a random suffix on first start)")
	addEdgeOpsFlags(fl, &f.cfg)         // --metrics and limits
	addEtcdFlags(fl, &f.cfg, &f.etcd)   // etcd.go: TLS and auth for --etcd-endpoints
	addHTTPSFlags(fl, &f.cfg, &f.https) // https.go: --https-addr, ACME, PROXY protocol
	addDNSFlags(fl, &f.cfg, &f.dns)     // dns.go: --dns-addr, --dns-zone
	addFleetFlags(fl, &f.cfg, &f.fleet) // fleet.go: --region, --join
	addDrainFlags(fl, &f.cfg)           // drain.go: --drain-delay, --drain-timeout
	cmd.AddCommand(cli.FleetCommands(g)...)
	return cmd
}

func runEdge(ctx context.Context, g *cli.Env, f edgeFlags) error {
	f.cfg.Logger = g.Logger()
	f.cfg.Version = connector.Version
	if err := f.etcd.apply(&f.cfg); err != nil {
		return err
	}
	if err := f.https.apply(&f.cfg); err != nil {
		return err
	}
	if err := f.dns.apply(&f.cfg); err != nil {
		return err
	}
	if err := f.fleet.apply(&f.cfg); err != nil {
		return err
	}
	procs.Adapt(ctx, procs.Config{Logger: f.cfg.Logger}) // one P while the load is light
	srv, err := edge.Start(ctx, f.cfg)
	if err != nil {
		return startError(etcdError(err)) // listen.go, etcd.go
	}
	defer srv.Close()
	out := g.Stdout
	fmt.Fprintf(out, "adit edge %s is serving\n", srv.Node())
	fmt.Fprintf(out, "  public HTTP  %s\n", srv.HTTPAddr())
	if a := srv.HTTPSAddr(); a != nil {
		fmt.Fprintf(out, "  public HTTPS %s (certificates from %s)\n", a, f.cfg.ACME.CA)
	}
	fmt.Fprintf(out, "  tunnels      %s (udp, quic) and %s (tcp, websocket)\n", srv.TunnelAddr(), srv.TunnelTCPAddr())
	if a := srv.PeerAddr(); a != "" {
		fmt.Fprintf(out, "  peer link    %s (udp, quic)\n", a)
	}
	fmt.Fprintf(out, "  API          %s (the dashboard at %s/)\n", srv.APIURL(), srv.APIURL())
	if u := srv.EtcdPeerURL(); u != "" {
		fmt.Fprintf(out, "  etcd peers   %s (the fleet's members)\n", u)
	}
	fmt.Fprint(out, dnsLine(srv, &f.cfg))
	if a := srv.MetricsAddr(); a != nil {
		fmt.Fprintf(out, "  metrics      http://%s/metrics\n", a)
	}
	if srv.CreatedAdminToken() {
		fmt.Fprintf(out, "An admin API token was written to %s (mode 0600).\n", srv.AdminTokenFile())
	}
	fmt.Fprintf(out, "Log in with:\n  %s\n", srv.LoginCommand())
	select {
	case <-ctx.Done():
		// SIGTERM or SIGINT: drain (drain.go); a second signal ends the
		// process at once.
		fmt.Fprintln(out, "adit edge: draining (a second signal stops it at once)")
		srv.Drain(context.Background())
		fmt.Fprintln(out, "adit edge: shutting down")
		return srv.Close()
	case <-srv.DrainRequested():
		fmt.Fprintln(out, "adit edge: draining, as an operator asked (adit edge drain)")
		srv.Drain(ctx)
		fmt.Fprintln(out, "adit edge: shutting down")
		return srv.Close()
	case <-srv.Left():
		fmt.Fprintln(out, "adit edge: left the fleet and stopped; its etcd data is removed (start it with --join to come back)")
		return nil
	case err := <-srv.Err():
		// A listener or server died: exit non-zero with the cause, so a
		// supervisor restarts the edge rather than keep half of it.
		srv.Close()
		return err
	}
}

// addEdgeOpsFlags registers `adit edge`'s operator flags: the metrics
// listener and the limits on public clients.
func addEdgeOpsFlags(fl *pflag.FlagSet, cfg *edge.Config) {
	fl.StringVar(&cfg.MetricsAddr, "metrics", "", "serve /metrics, /ready, /healthcheck and /debug/pprof/ on host:port (port 0 picks one; default: off)")
	fl.IntVar(&cfg.MaxHeaderBytes, "max-header-bytes", edge.DefaultMaxHeaderBytes, "largest public request header accepted (431 past it)")
	fl.Int64Var(&cfg.MaxRequestBody, "max-request-body", 0, "largest public request body accepted, in bytes (413 past it; 0: no limit)")
	fl.DurationVar(&cfg.ReadHeaderTimeout, "read-header-timeout", edge.DefaultReadHeaderTimeout, "how long a public client may take to send a request header")
	fl.DurationVar(&cfg.IdleTimeout, "idle-timeout", edge.DefaultIdleTimeout, "close public keep-alive connections idle this long")
	fl.BoolVar(&cfg.LogRequests, "log-requests", false, "log one line per public request at info level (adit tail works without it)")
	fl.StringVar(&cfg.AdminSSO.IdP, "admin-idp", "", "let administrators log in to the dashboard through this Access identity provider (`adit access idp add`; docs/access.md)")
	fl.StringSliceVar(&cfg.AdminSSO.Emails, "admin-emails", nil, "with --admin-idp: the people who may (comma-separated emails)")
	fl.StringSliceVar(&cfg.AdminSSO.Groups, "admin-groups", nil, "with --admin-idp: the provider's groups whose members may (comma-separated)")
	addShieldFlags(fl, cfg)
	addAdmissionFlags(fl, cfg)
}

// addAdmissionFlags registers the bounds on connector registrations the
// edge works on at once (edge package: admission.go, tunnellimits.go); a
// connector past them is told to come back a little later.
func addAdmissionFlags(fl *pflag.FlagSet, cfg *edge.Config) {
	fl.IntVar(&cfg.MaxRegistering, "max-registering", 0, fmt.Sprintf("connector registrations the edge works on at once; past it a connector is told to register again later (0: the default, %d)", edge.DefaultMaxRegistering))
	fl.IntVar(&cfg.MaxHandshakes, "max-handshakes", 0, fmt.Sprintf("tunnel-port handshakes (QUIC and WebSocket together) the edge works on at once; past it a connector is refused before TLS and dials again a little later (0: the default, %d; -1: no bound)", edge.DefaultMaxHandshakes))
	fl.IntVar(&cfg.MaxRegisteringPerAddr, "max-registering-per-addr", 0, fmt.Sprintf("tunnel-port connections one client address may have that have not sent their registration yet: half register, the others are told to come back later, one past it is closed (0: the default, %d; -1: no cap)", edge.DefaultMaxRegisteringPerAddr))
}

// addShieldFlags registers the shield's flags: the WAF log, the flood
// caps and the rate limits' memory (package shield; 0 takes its default,
// a negative cap turns it off).
func addShieldFlags(fl *pflag.FlagSet, cfg *edge.Config) {
	fl.StringVar(&cfg.WAFLog, "waf-log", "", "append every WAF rule match to this file, in ModSecurity's error-log shape")
	fl.IntVar(&cfg.Flood.MaxConnsPerAddr, "flood-conns-per-addr", 0, "open connections one client address may hold (default 4096; -1: no cap)")
	fl.Float64Var(&cfg.Flood.NewConnsPerSecond, "flood-new-conns-per-sec", 0, "new connections per second one client address may open (default 1000, bursts of 4096; -1: no cap)")
	fl.IntVar(&cfg.Flood.MaxInflightPerAddr, "flood-inflight-per-addr", 0, "requests in flight one client address may have, upgraded connections included (default 4096; -1: no cap)")
	fl.IntVar(&cfg.Flood.MaxInflight, "flood-inflight", 0, "requests in flight on this edge before the heaviest senders are shed (default 16384; -1: no cap)")
	fl.Float64Var(&cfg.Flood.ContendedRatio, "flood-ratio", 0, "while the edge is contended (saturated in the last 10s: see --flood-wait and --flood-inflight), one client address is served at most this many times what all others send (default 2; -1: no such bound)")
	fl.DurationVar(&cfg.Flood.ContendedWait, "flood-wait", 0, "the edge is saturated when a tenth of its goroutines wait this long or longer for a CPU (default 2ms; -1ns: only when its requests in flight reach half of --flood-inflight)")
	fl.Float64Var(&cfg.Flood.MinRatePerAddr, "flood-min-rate-per-addr", 0, "requests per second a client address is served while the edge is contended, whatever its share (default 50)")
	fl.IntVar(&cfg.RateLimitKeys, "ratelimit-max-keys", 0, "clients the rate limits track at once (default 100000)")
}
