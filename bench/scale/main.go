// Command scale measures what one adit edge holds: many tunnels, routes
// and idle connector connections (issue 16, "Scale: what one edge holds").
//
// It starts an edge (this executable again, running `adit edge` in its own
// process, on 127.0.0.1 with an embedded etcd) and, through its control
// API, creates --tunnels tunnels and --routes routes spread over them,
// timing the creates on the empty edge and once the routes exist. Then
// --procs processes (this executable again) each run the connector library
// for their share of the tunnels, --conns connections a tunnel, over
// --protocol, from --addrs loopback addresses, until the edge counts every
// connection. It reports:
//
//   - API create rate: tunnel and route creates per second on the empty
//     edge and at --routes routes (--workers requests at once);
//   - edge RSS per route and per connection, goroutines per connection;
//   - idle CPU per connection: the edge's CPU time (utime+stime from
//     /proc) over a --quiet window with every connection up and no
//     request, less the same window's CPU before any connection, per
//     connection (and the connector processes' CPU per connection);
//   - route lookup: the latency of public requests for an unknown
//     hostname (404: HTTP parse + lookup + the page) and for routed ones
//     spread over all tunnels (lookup + a round trip to a connector), at a
//     steady --rate;
//   - edge start time: from exec to /ready 200, empty and at --routes;
//   - restart-to-all-connected: from SIGTERM to the old edge to the new
//     edge counting every connection again (and from the new edge's start);
//   - etcd size: the embedded etcd's database file.
//
// CPU figures are CPU-seconds from /proc, not wall time, so a machine
// shared with other work still gives usable figures; latencies and rates
// are wall time and move with the machine's load.
//
// Everything runs on 127.0.0.1; each step is bounded by --timeout, and the
// children are stopped on exit (and die with this process).
//
// Usage:
//
//	go run ./bench/scale                                  # 100 tunnels × 4, 1,000 routes
//	go run ./bench/scale --protocol websocket
//	go run ./bench/scale --tunnels 10000 --routes 100000 --procs 4 --addrs 64 --timeout 1h
//
// docs/performance.md has results and the method.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/adit-dev/adit/cli"
	"github.com/adit-dev/adit/cli/edgecmd"
)

// roleEnv tells a child process started from this executable what to be.
const roleEnv = "ADIT_SCALE_ROLE"

// config is the run's parameters; parseFlags sets every field.
type config struct {
	tunnels  int           // tunnels created and connected
	conns    int           // connections per tunnel
	routes   int           // routes, spread over the tunnels
	procs    int           // connector processes
	addrs    int           // loopback addresses the connectors dial from
	protocol string        // "quic" or "websocket"
	workers  int           // API requests at once while creating
	dialRate float64       // tunnels whose connectors start per second, over all processes
	window   int           // creates timed at each end; 0: routes/10, at most 1,000
	quiet    time.Duration // idle CPU window
	rest     time.Duration // wait before each idle window
	rate     int           // steady public requests per second
	reqs     time.Duration // how long the steady requests run
	restart  bool          // restart the edge and time the reconnection
	timeout  time.Duration // the whole run
	out      string        // JSON results; "": none
	profile  string        // the edge's CPU profile over the connections' idle window; "": none
	heap     string        // the edge's heap profile after that window; "": none
	keep     bool          // keep the temporary directory (the processes' logs)
	progress io.Writer     // progress lines; nil: none
}

func (c *config) logf(format string, args ...any) {
	if c.progress != nil {
		fmt.Fprintf(c.progress, "scale: "+format+"\n", args...)
	}
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{progress: stderr}
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.tunnels, "tunnels", 100, "tunnels to create and connect (the issue's scale: 10000)")
	fs.IntVar(&c.conns, "conns", 4, "connections per tunnel")
	fs.IntVar(&c.routes, "routes", 1000, "routes, spread over the tunnels (the issue's scale: 100000)")
	fs.IntVar(&c.procs, "procs", 2, "connector processes sharing the tunnels")
	fs.IntVar(&c.addrs, "addrs", 8, "loopback addresses the connectors dial from, 127.0.0.2 onwards, a tunnel's connections from one (as connectors on many hosts; 0: the system's choice, 127.0.0.1)")
	fs.StringVar(&c.protocol, "protocol", "quic", "connector transport: quic or websocket")
	fs.IntVar(&c.workers, "workers", 8, "API requests at once while creating tunnels and routes")
	fs.Float64Var(&c.dialRate, "start-rate", 200, "tunnels whose connectors start per second, over all processes (0: all at once)")
	fs.IntVar(&c.window, "window", 0, "creates timed at each end of the run (default: routes/10, at most 1000)")
	fs.DurationVar(&c.quiet, "quiet", 10*time.Second, "window over which idle CPU is measured")
	fs.DurationVar(&c.rest, "rest", 3*time.Second, "rest before each idle window, once RSS settled (start-up work ends)")
	fs.IntVar(&c.rate, "rate", 200, "steady public requests per second, spread over all routes")
	fs.DurationVar(&c.reqs, "requests", 5*time.Second, "how long the steady requests run (0: none)")
	fs.BoolVar(&c.restart, "restart", true, "restart the edge and time until every connection is back")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "bound on the whole run")
	fs.StringVar(&c.out, "out", "", "write the results as JSON to this file")
	fs.StringVar(&c.profile, "cpuprofile", "", "write the edge's Go CPU profile over the idle window with every connection up to this file")
	fs.StringVar(&c.heap, "heapprofile", "", "write the edge's heap profile, with every connection up, to this file")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory with the edge's and the connector processes' logs")
	quietLog := fs.Bool("q", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("scale: unexpected arguments %q", fs.Args())
	}
	switch {
	case c.tunnels < 1, c.conns < 1, c.procs < 1, c.workers < 1:
		return nil, errors.New("scale: --tunnels, --conns, --procs and --workers must be at least 1")
	case c.routes < 0, c.rate < 0, c.window < 0, c.addrs < 0:
		return nil, errors.New("scale: --routes, --rate, --window and --addrs must not be negative")
	case c.addrs > 1<<16:
		return nil, errors.New("scale: --addrs: at most 65536 (127.0.0.2 to 127.1.0.1)")
	case c.protocol != "quic" && c.protocol != "websocket":
		return nil, fmt.Errorf("scale: --protocol %q: want quic or websocket", c.protocol)
	case c.quiet <= 0 || c.timeout <= 0 || c.rest < 0:
		return nil, errors.New("scale: --quiet and --timeout must be positive, --rest not negative")
	}
	if c.procs > c.tunnels {
		c.procs = c.tunnels
	}
	if c.window == 0 {
		c.window = min(max(c.routes/10, 1), 1000)
	}
	if *quietLog {
		c.progress = nil
	}
	return c, nil
}

// runRole runs this process as the child roleEnv names, if any, and exits.
func runRole() {
	switch os.Getenv(roleEnv) {
	case "edge":
		cli.Run(cli.Program{Name: "adit", Commands: edgecmd.Commands()})
		os.Exit(0)
	case "connectors":
		os.Exit(runConnectors())
	}
}

func main() {
	runRole()
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, cfg)
	if res != nil {
		res.print(os.Stdout)
		if cfg.out != "" {
			if werr := res.writeJSON(cfg.out); werr != nil {
				fmt.Fprintln(os.Stderr, werr)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
