// Command bench is adit's benchmark harness. It builds the adit and
// adit-connector binaries, starts an origin (this executable again, as an
// HTTP server: see origin.go), an `adit edge` and one `adit-connector
// tunnel run` per transport (`adit tunnel run` with --connector adit) as
// separate processes, all on 127.0.0.1, and measures in the same run:
//
//   - direct:         client → origin
//   - proxy2:         client → Go httputil.ReverseProxy → a second one →
//     origin, each a process (proxy2.go): the least work an HTTP-aware
//     tunnel must do, the reference issue 16's targets are ratios to
//   - adit-quic:      client → edge → QUIC → connector → origin
//   - adit-websocket: the same over the WebSocket transport, when the
//     connector accepts `--protocol websocket` (otherwise "n/a")
//   - any --compare NAME=URL path (another tunnel to the same origin; see
//     --origin-addr)
//
// The scenarios: small GETs (1 KiB) at each --concurrency (closed loop:
// req/s, p50/p99/p99.9); one big download and one big upload on a single
// stream (MB/s); a fixed request rate (latency from the scheduled time,
// RSS and CPU of the edge and connector); many idle WebSockets (RSS per
// connection on each side); the time from `tunnel run` to the first proxied
// 200; the time to serve again after the edge restarts; what Access
// costs a request (access.go: adit-quic with and without an Access
// session, alternating); and (peer) the same hostname through a second
// edge that forwards over the peer link, against the edge that holds the
// tunnel (peer.go). For the small
// GETs and the transfers it also reports the CPU budget: the CPU time each
// process on the path (load generator, origin, edge, connector) spends per
// request or per GB, and the req/s ratio to direct that budget allows on
// shared, saturated CPUs (cpu.go). The load comes from the harness's own
// Go client, except for the small GETs, which wrk sends when it is
// installed (--loadgen).
//
// It prints one table, each figure with its ratio to direct and to proxy2
// ("p2"), followed by the targets of issues 5 and 16, and writes the same results as JSON to --out. All
// traffic stays on 127.0.0.1; every step is bounded in time; the children
// are stopped on exit and on Ctrl-C.
//
// Usage:
//
//	go run ./bench [flags]
//	go run ./bench --scenarios small --concurrency 1,50 --duration 5s
//	go run ./bench --big-size 256MiB --idle-ws 1000 --rate-duration 10s
//	go run ./bench --compare frp=http://127.0.0.1:7000 --compare-host frp=app.test
//	go run ./bench --scenarios rate --connector adit   # connectors in the full binary
//	go run ./bench --scenarios small --loadgen go      # the Go client even with wrk installed
//	go run ./bench --scenarios peer                    # forwarded vs local, two edges
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
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Scenario names for --scenarios, in the order they run. The fixed rate
// runs first, on fresh processes, so its RSS is the steady state of that
// load and not the high-water mark of a 1 GiB transfer.
var allScenarios = []string{"rate", "idle-ws", "small", "access", "download", "upload", "restart", "waf", "flood", "https", "peer"}

// config is the harness's parameters. newConfig's flags set every field.
type config struct {
	scenarios     []string      // subset of allScenarios
	duration      time.Duration // measured time per small-GET run
	warmup        time.Duration // load before each small-GET measurement
	concurrency   []int         // small-GET worker counts
	loadgen       string        // small-GET load generator: "go" or "wrk" (parseFlags resolves "auto")
	wrkBin        string        // wrk's path, for loadgen "wrk"
	bigSize       int64         // bytes per download and upload
	bigTimeout    time.Duration // limit per download or upload
	idleWS        int           // idle WebSockets per adit path
	rate          int           // requests per second in the fixed-rate scenario
	rateDuration  time.Duration
	compares      []compare
	originAddr    string   // where the origin listens
	aditBin       string   // a prebuilt adit; empty: go build
	connector     string   // the binary connectors run: "adit-connector" or "adit"
	connectorBin  string   // a prebuilt adit-connector; empty: go build
	out           string   // JSON results file; empty: none
	cpuprofileDir string   // perf profiles of edge and connector; empty: none
	pprofDir      string   // Go CPU and allocation profiles of edge and connector; empty: none
	childEnv      []string // extra KEY=VALUE for the edge and connectors (GOGC=400, ...)
	startTimeout  time.Duration
	timeout       time.Duration // the whole run
	// The flood scenario (shield.go).
	floodInflight []int         // the edge's --flood-inflight, a run each (0: its default)
	floodRatio    float64       // the edge's --flood-ratio (0: its default)
	floodRate     int           // the well-behaved client's req/s
	floodDuration time.Duration // each of its two runs
	floodRounds   int           // alternating rounds the runs are split into
	floodWorkers  int           // the flooder's connections
	floodIdle     int           // the idle connections opened
	progress      io.Writer     // progress lines; nil: none
}

// compare is a --compare path.
type compare struct {
	name   string
	target target
}

func (c *config) logf(format string, args ...any) {
	if c.progress != nil {
		fmt.Fprintf(c.progress, "bench: "+format+"\n", args...)
	}
}

func (c *config) has(scenario string) bool { return slices.Contains(c.scenarios, scenario) }

func main() {
	switch os.Getenv(roleEnv) {
	case "origin":
		os.Exit(runOrigin())
	case "proxy":
		os.Exit(runProxy())
	case "flooder":
		os.Exit(runFlooder())
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills the harness; its children get SIGKILL
	}()
	res, err := run(ctx, cfg)
	if res != nil {
		res.writeTable(os.Stdout)
		if cfg.out != "" {
			if werr := res.writeJSON(cfg.out); werr != nil {
				fmt.Fprintln(os.Stderr, "bench:", werr)
				os.Exit(1)
			}
			fmt.Fprintf(os.Stderr, "bench: results written to %s\n", cfg.out)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := &config{progress: stderr}
	var (
		scenarios   = fs.String("scenarios", "all", "comma-separated scenarios to run: "+strings.Join(allScenarios, ",")+" (the startup time is always measured)")
		concurrency = fs.String("concurrency", "1,50,500", "comma-separated worker counts for the small-GET scenario")
		loadgen     = fs.String("loadgen", "auto", "load generator for the small GETs: go (the harness's client), wrk, or auto (wrk when it is on PATH); other scenarios always use the Go client")
		bigSize     = fs.String("big-size", "1GiB", "bytes per big download and upload (suffixes KiB, MiB, GiB)")
		compares    = map[string]string{}
		hosts       = map[string]string{}
	)
	fs.DurationVar(&cfg.duration, "duration", 3*time.Second, "measured time of each small-GET run")
	fs.DurationVar(&cfg.warmup, "warmup", 500*time.Millisecond, "load before each small-GET measurement starts")
	fs.DurationVar(&cfg.bigTimeout, "big-timeout", 30*time.Second, "limit per big transfer; a slower one reports the rate so far, marked partial")
	fs.IntVar(&cfg.idleWS, "idle-ws", 10000, "idle WebSockets to hold open per adit path")
	fs.IntVar(&cfg.rate, "rate", 1000, "requests per second in the fixed-rate scenario")
	fs.DurationVar(&cfg.rateDuration, "rate-duration", 30*time.Second, "length of the fixed-rate scenario, per path")
	fs.Func("compare", "NAME=URL: also measure this path to the same origin (repeatable; http to a loopback IP)", func(s string) error {
		name, url, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			return errors.New("want NAME=URL")
		}
		if err := checkCompare(url); err != nil {
			return err
		}
		if _, dup := compares[name]; dup || name == "direct" || strings.HasPrefix(name, "adit-") {
			return fmt.Errorf("name %q is taken", name)
		}
		compares[name] = strings.TrimSuffix(url, "/")
		cfg.compares = append(cfg.compares, compare{name: name})
		return nil
	})
	fs.Func("compare-host", "NAME=HOST: the Host header for --compare NAME (repeatable)", func(s string) error {
		name, host, ok := strings.Cut(s, "=")
		if !ok || name == "" || host == "" {
			return errors.New("want NAME=HOST")
		}
		hosts[name] = host
		return nil
	})
	fs.Func("child-env", "KEY=VALUE: set in the environment of the edge and connectors only, e.g. GOGC=400 to try a tuning (repeatable)", func(s string) error {
		if k, _, ok := strings.Cut(s, "="); !ok || k == "" {
			return errors.New("want KEY=VALUE")
		}
		cfg.childEnv = append(cfg.childEnv, s)
		return nil
	})
	fs.StringVar(&cfg.originAddr, "origin-addr", "127.0.0.1:0", "where the origin listens (fix it to point a --compare tunnel at it)")
	fs.StringVar(&cfg.aditBin, "adit", "", "use this adit binary instead of building one")
	fs.StringVar(&cfg.connector, "connector", "adit-connector", "binary the connectors run: adit-connector (the slim one, without the edge) or adit")
	fs.StringVar(&cfg.connectorBin, "adit-connector", "", "use this adit-connector binary instead of building one")
	fs.StringVar(&cfg.out, "out", "bench-results.json", "write the results as JSON here (empty: do not)")
	fs.StringVar(&cfg.pprofDir, "pprof-dir", "", "fetch Go CPU and allocation profiles (pprof) of the edge and connectors (and of the proxy2 hops, small GETs only) during the small-GET run nearest c=50 and the big transfers into this directory, each with a -top summary")
	fs.StringVar(&cfg.cpuprofileDir, "cpuprofile-dir", "", "record perf profiles of the edge and connectors during the small-GET run nearest c=50 and the big transfers into this directory (needs perf)")
	fs.DurationVar(&cfg.startTimeout, "start-timeout", 20*time.Second, "how long a connector (or restarted edge) may take to serve")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Minute, "limit for the whole run")
	floodInflight := fs.String("flood-inflight", "0,64", "flood scenario: comma-separated values of the edge's --flood-inflight (requests in flight before the heaviest senders are shed), a run through the edge each; 0: the edge's default")
	fs.Float64Var(&cfg.floodRatio, "flood-ratio", 0, "flood scenario: the edge's --flood-ratio (how many times what the others send one address is served while the edge is contended; 0: the edge's default, -1: none)")
	fs.IntVar(&cfg.floodRate, "flood-rate", 200, "flood scenario: the well-behaved client's requests per second")
	fs.DurationVar(&cfg.floodDuration, "flood-duration", 10*time.Second, "flood scenario: each of the well-behaved client's runs (alone, flooded), in total over the rounds")
	fs.IntVar(&cfg.floodRounds, "flood-rounds", 4, "flood scenario: alternating alone/flooded rounds each run is split into")
	fs.IntVar(&cfg.floodWorkers, "flood-workers", 256, "flood scenario: the flooding address's connections, each sending as fast as it can")
	fs.IntVar(&cfg.floodIdle, "flood-idle", 2000, "flood scenario: the idle connections another address opens")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}

	if *scenarios == "all" {
		cfg.scenarios = allScenarios
	} else {
		for s := range strings.SplitSeq(*scenarios, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(allScenarios, s) {
				return nil, fmt.Errorf("bench: --scenarios: unknown %q; want some of %s", s, strings.Join(allScenarios, ","))
			}
			cfg.scenarios = append(cfg.scenarios, s)
		}
	}
	for s := range strings.SplitSeq(*concurrency, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bench: --concurrency: %q is not a positive number", s)
		}
		cfg.concurrency = append(cfg.concurrency, n)
	}
	for s := range strings.SplitSeq(*floodInflight, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < -1 {
			return nil, fmt.Errorf("bench: --flood-inflight: %q is not a number of requests (0: the edge's default, -1: no cap)", s)
		}
		cfg.floodInflight = append(cfg.floodInflight, n)
	}
	var err error
	switch cfg.loadgen = *loadgen; cfg.loadgen {
	case "go":
	case "wrk", "auto":
		cfg.wrkBin, err = exec.LookPath("wrk")
		switch {
		case err == nil:
			cfg.loadgen = "wrk"
		case cfg.loadgen == "auto":
			cfg.loadgen = "go"
		default:
			return nil, fmt.Errorf("bench: --loadgen wrk: %w", err)
		}
	default:
		return nil, fmt.Errorf("bench: --loadgen %q: want auto, go or wrk", cfg.loadgen)
	}
	if cfg.bigSize, err = parseSize(*bigSize); err != nil {
		return nil, fmt.Errorf("bench: --big-size: %w", err)
	}
	for i := range cfg.compares {
		c := &cfg.compares[i]
		c.target = target{base: compares[c.name], host: hosts[c.name]}
		delete(hosts, c.name)
	}
	for name := range hosts {
		return nil, fmt.Errorf("bench: --compare-host %s: no --compare %s", name, name)
	}
	switch {
	case cfg.duration <= 0 || cfg.warmup < 0 || cfg.rateDuration <= 0 || cfg.bigTimeout <= 0:
		return nil, errors.New("bench: durations must be positive")
	case cfg.rate < 1:
		return nil, errors.New("bench: --rate must be at least 1")
	case cfg.idleWS < 1:
		return nil, errors.New("bench: --idle-ws must be at least 1")
	case cfg.connector != "adit-connector" && cfg.connector != "adit":
		return nil, fmt.Errorf("bench: --connector %q: want adit-connector or adit", cfg.connector)
	case cfg.connector == "adit" && cfg.connectorBin != "":
		return nil, errors.New("bench: --adit-connector is for --connector adit-connector")
	}
	return cfg, nil
}

// parseSize reads a byte count with an optional binary suffix: 512, 64KiB,
// 16MiB, 1GiB (K, M, G and KB, MB, GB mean the same).
func parseSize(s string) (int64, error) {
	num := strings.TrimRight(s, "KMGiBkmgb")
	mult := int64(1)
	switch strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(s[len(num):], "B"), "b")) {
	case "":
	case "K", "KI":
		mult = 1 << 10
	case "M", "MI":
		mult = 1 << 20
	case "G", "GI":
		mult = 1 << 30
	default:
		return 0, fmt.Errorf("%q: unknown unit", s)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%q: want a positive byte count like 1GiB", s)
	}
	return n * mult, nil
}

// raiseNoFile sets RLIMIT_NOFILE to at least want (raising the hard limit
// too if this process may), so that the harness and the children, which
// inherit it, can hold the idle WebSockets. It always calls Setrlimit: Go
// raises its own soft limit at start but gives children the original one
// unless the program sets the limit itself.
func raiseNoFile(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	n := lim
	n.Cur = max(lim.Cur, want)
	n.Max = max(lim.Max, n.Cur)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &n); err == nil {
		return n.Cur, nil
	}
	// Not allowed to raise the hard limit: take all of it.
	n = lim
	n.Cur = lim.Max
	err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &n)
	if err != nil {
		return lim.Cur, err
	}
	return n.Cur, fmt.Errorf("RLIMIT_NOFILE is %d, below the %d wanted", n.Cur, want)
}
