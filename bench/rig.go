package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/adit-dev/adit/bench/procstat"
)

// pathKind says how a path reaches the origin.
type pathKind int

const (
	kindDirect  pathKind = iota // client → origin
	kindAdit                    // client → edge → tunnel → connector → origin
	kindCompare                 // a URL given with --compare
	kindAccess                  // adit-quic's tunnel behind Access, with a session (access.go)
	kindProxy2                  // client → ReverseProxy → ReverseProxy → origin (proxy2.go)
)

// path is one way from the load generator to the origin.
type path struct {
	name      string
	kind      pathKind
	protocol  string // kindAdit: the connector's --protocol
	target    target
	hostname  string   // kindAdit: the routed name
	credFile  string   // kindAdit: the tunnel's credentials file
	conn      *proc    // kindAdit: the connector process
	metrics   string   // kindAdit: the connector's metrics address, with --pprof-dir
	hops      []*proc  // kindProxy2: the two proxy processes, client side first
	hopsPprof []string // kindProxy2: their pprof addresses, with --pprof-dir
	na        string   // why the path is unavailable; "" if it is available
}

// edgeProc is an `adit edge` process and what it printed.
type edgeProc struct {
	*proc
	httpAddr  string
	httpsAddr string   // the public HTTPS listener (the https scenario)
	metrics   string   // metrics address, with --pprof-dir
	login     []string // the printed `adit login ...` arguments, after "adit"
}

// rig is everything the harness started: the binaries, the origin, an
// edge, and a connector per adit path, each a process, all on 127.0.0.1.
type rig struct {
	cfg        *config
	tmp        string
	bin        string // adit: the edge and the CLI
	connBin    string // what the connectors run: adit-connector, or adit (--connector adit)
	home       string // ADIT_HOME for the CLI and connectors
	dataDir    string // the edge's --data-dir
	tunnelAddr string // the edge's --tunnel-addr, kept across a restart
	origin     *originProc
	wrk        *wrk // the small GETs' load generator, with --loadgen wrk; nil: the Go client
	edge       *edgeProc
	paths      []*path
	procs      []*proc
	edgeArgs   []string       // more flags for the edge (the flood scenario's)
	closers    []func() error // in-process helpers (access.go's OpenID provider)
}

var (
	reHTTPAddr  = regexp.MustCompile(`public HTTP\s+(\S+)`)
	reHTTPSAddr = regexp.MustCompile(`public HTTPS\s+(\S+)`)
	reLogin     = regexp.MustCompile(`(?m)^\s+adit (login .*)$`)
	reCreated   = regexp.MustCompile(`Created tunnel (\S+) with id ([0-9a-f-]{36})`)
)

// protocols are the adit transports measured, in table order.
var protocols = []string{"quic", "websocket"}

// setup builds adit, starts the origin and the edge, creates and routes a
// tunnel per protocol and starts its connector, timing each from start to
// its first proxied 200. A connector that will not serve makes its path
// unavailable rather than failing the run.
func (r *rig) setup(ctx context.Context, res *Results) error {
	var err error
	if r.tmp, err = os.MkdirTemp("", "adit-bench-"); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	r.home = filepath.Join(r.tmp, "home")
	r.dataDir = filepath.Join(r.tmp, "edge-data")
	if err = r.buildBinaries(ctx, res); err != nil {
		return err
	}
	if r.cfg.loadgen == "wrk" {
		if r.wrk, err = newWrk(r.cfg.wrkBin, r.tmp); err != nil {
			return err
		}
		res.Settings.LoadGenVersion = r.wrk.version
	}
	if r.origin, err = startOrigin(ctx, r.cfg.originAddr); err != nil {
		return err
	}
	r.procs = append(r.procs, r.origin.proc) // first in, so stopped last
	r.paths = append(r.paths, &path{name: "direct", kind: kindDirect, target: target{base: r.origin.URL()}})
	p2, err := r.startProxy2(ctx)
	if err != nil {
		return err
	}
	r.paths = append(r.paths, p2)
	if r.tunnelAddr, err = freeUDPAndTCPAddr(); err != nil {
		return err
	}
	if r.edge, err = r.startEdge(ctx); err != nil {
		return err
	}
	env := r.env()
	if _, err := runCmd(ctx, time.Minute, r.bin, env, r.edge.login...); err != nil {
		return err
	}
	for _, proto := range protocols {
		p := &path{name: "adit-" + proto, kind: kindAdit, protocol: proto, hostname: proto + ".bench.test"}
		p.target = target{base: "http://" + r.edge.httpAddr, host: p.hostname}
		r.paths = append(r.paths, p)
		out, err := runCmd(ctx, time.Minute, r.bin, env, "tunnel", "create", "bench-"+proto)
		if err != nil {
			return err
		}
		m := reCreated.FindStringSubmatch(out)
		if m == nil {
			return fmt.Errorf("bench: tunnel create printed no tunnel id:\n%s", out)
		}
		p.credFile = filepath.Join(r.home, m[2]+".json")
		if _, err := runCmd(ctx, time.Minute, r.bin, env, "tunnel", "route", "dns", "bench-"+proto, p.hostname); err != nil {
			return err
		}
	}
	for _, p := range r.paths {
		if p.kind != kindAdit {
			continue
		}
		d, err := r.startConnector(ctx, p)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.na = err.Error()
			r.cfg.logf("%s: n/a: %s", p.name, p.na)
			continue
		}
		res.set(figStartup, "ms", p.name, ms(d))
		r.cfg.logf("%s: tunnel run → first 200 in %s", p.name, d.Round(time.Millisecond))
	}
	// The resting RSS of each process, once the start-up garbage settles.
	pids := []int{r.edge.pid()}
	for _, p := range r.available(kindAdit) {
		pids = append(pids, p.conn.pid())
	}
	procstat.SettleRSS(ctx, pids, 3*time.Second)
	for _, p := range r.available(kindAdit) {
		for side, pid := range map[string]int{"edge": r.edge.pid(), "connector": p.conn.pid()} {
			if m, err := procstat.ReadMem(pid); err == nil {
				res.set(figName{figStartup.scenario, side + " RSS, idle"}, "MB", p.name, float64(m.RSS)/1e6)
				res.set(figName{figStartup.scenario, side + " RSS anon, idle"}, "MB", p.name, float64(m.Anon)/1e6)
			}
		}
	}
	if r.cfg.has("small") || r.cfg.has("access") {
		r.setupAccess(ctx) // access.go
	}
	for _, c := range r.cfg.compares {
		r.paths = append(r.paths, &path{name: c.name, kind: kindCompare, target: c.target})
	}
	return nil
}

func (r *rig) env() []string {
	return childEnv(append([]string{"ADIT_HOME=" + r.home}, r.cfg.childEnv...)...)
}

// buildBinaries sets r.bin to --adit or a fresh build of cmd/adit, and
// r.connBin to the binary the connectors run (--connector): adit itself, or
// --adit-connector or a fresh build of cmd/adit-connector. It records which
// in res.
func (r *rig) buildBinaries(ctx context.Context, res *Results) error {
	var err error
	if r.bin, err = r.build(ctx, "adit", r.cfg.aditBin); err != nil {
		return err
	}
	r.connBin = r.bin
	if r.cfg.connector == "adit-connector" {
		if r.connBin, err = r.build(ctx, "adit-connector", r.cfg.connectorBin); err != nil {
			return err
		}
	}
	res.Settings.Connector = filepath.Base(r.connBin)
	res.Settings.EdgeBinaryBytes = fileSize(r.bin)
	res.Settings.ConnectorBinaryBytes = fileSize(r.connBin)
	return nil
}

// build returns prebuilt, or builds github.com/adit-dev/adit/cmd/<name> into
// the temp dir.
func (r *rig) build(ctx context.Context, name, prebuilt string) (string, error) {
	if prebuilt != "" {
		return prebuilt, nil
	}
	bin := filepath.Join(r.tmp, name)
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("bench: no go command to build %s with; pass --%s PATH", name, name)
	}
	r.cfg.logf("building %s", name)
	// A cold build cache compiles etcd and friends: allow for it.
	if _, err := runCmd(ctx, 10*time.Minute, goBin, os.Environ(), "build", "-o", bin, "github.com/adit-dev/adit/cmd/"+name); err != nil {
		return "", err
	}
	return bin, nil
}

// fileSize is the size of the file at path, or 0 if it cannot be read.
func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func (r *rig) startEdge(ctx context.Context) (*edgeProc, error) {
	// The HTTPS listener serves certificates brought with `adit cert add`
	// (https.go); its ACME CA is a closed loopback port, so that no order
	// leaves the machine.
	args := append([]string{"edge", "--data-dir", r.dataDir,
		"--http-addr", "127.0.0.1:0", "--tunnel-addr", r.tunnelAddr, "--api-addr", "127.0.0.1:0",
		"--https-addr", "127.0.0.1:0", "--acme-ca", "https://127.0.0.1:1/directory"}, r.cfg.metricsArgs()...)
	if r.edgeArgs == nil {
		// The proxy's own speed: no flood caps (the harness is one
		// address with up to --idle-ws connections).
		args = append(args, "--flood-conns-per-addr", "-1", "--flood-new-conns-per-sec", "-1",
			"--flood-inflight-per-addr", "-1", "--flood-inflight", "-1")
	}
	args = append(args, r.edgeArgs...)
	p, err := startProc("edge", r.bin, r.env(), args...)
	if err != nil {
		return nil, err
	}
	r.procs = append(r.procs, p)
	e := &edgeProc{proc: p}
	m, err := p.waitMatch(ctx, reHTTPAddr, time.Minute)
	if err != nil {
		return nil, err
	}
	e.httpAddr = m[1]
	if m, err = p.waitMatch(ctx, reHTTPSAddr, time.Minute); err != nil {
		return nil, err
	}
	e.httpsAddr = m[1]
	if e.metrics, err = r.cfg.waitMetrics(ctx, p); err != nil {
		return nil, err
	}
	if m, err = p.waitMatch(ctx, reLogin, time.Minute); err != nil {
		return nil, err
	}
	for _, f := range strings.Fields(m[1]) {
		e.login = append(e.login, strings.Trim(f, `"`))
	}
	return e, nil
}

// startConnector starts p's `tunnel run` (in r.connBin) and returns the
// time from starting it to the first 200 through the edge.
func (r *rig) startConnector(ctx context.Context, p *path) (time.Duration, error) {
	start := time.Now()
	args := append([]string{"tunnel", "run",
		"--url", r.origin.URL(), "--credentials-file", p.credFile,
		"--edge", r.tunnelAddr, "--edge-server-name", "localhost", "--protocol", p.protocol}, r.cfg.metricsArgs()...)
	c, err := startProc(p.name+" connector", r.connBin, r.env(), args...)
	if err != nil {
		return 0, err
	}
	r.procs = append(r.procs, c)
	p.conn = c
	if err := waitServing(ctx, p.target, c, r.cfg.startTimeout); err != nil {
		c.stop(5 * time.Second)
		return 0, err
	}
	d := time.Since(start)
	if p.metrics, err = r.cfg.waitMetrics(ctx, c); err != nil {
		c.stop(5 * time.Second)
		return 0, err
	}
	// A connector that quietly fell back to another transport would
	// measure the wrong thing.
	out := c.out.String()
	if !regexp.MustCompile(`connection registered.*protocol=` + regexp.QuoteMeta(p.protocol)).MatchString(out) {
		c.stop(5 * time.Second)
		return 0, fmt.Errorf("connector served but did not log a %s connection:\n%s", p.protocol, c.out.tail(5))
	}
	return d, nil
}

// waitServing polls t until it answers 200, c (if set) exits, or timeout.
// It polls every 2ms: this is the measurement, so the interval bounds its
// resolution.
func waitServing(ctx context.Context, t target, c *proc, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := newClient(1, time.Second)
	defer client.CloseIdleConnections()
	buf := make([]byte, 4<<10)
	var last error
	for {
		req, err := t.request(ctx, "GET", "/1k", nil)
		if err != nil {
			return err
		}
		if last = getOnce(client, req, buf); last == nil {
			return nil
		}
		if c != nil && c.exited() {
			return fmt.Errorf("connector exited (%v): %s", c.err, lastLine(c.out.tail(3)))
		}
		select {
		case <-ctx.Done():
			if c != nil {
				return fmt.Errorf("no 200 within %s (last: %v); connector output:\n%s", timeout, last, c.out.tail(5))
			}
			return fmt.Errorf("no 200 within %s (last: %v)", timeout, last)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// restartEdge stops the edge with SIGTERM and starts it again with the same
// data dir and tunnel port, then times each adit path until it answers 200:
// from the SIGTERM, and from the new edge's start.
func (r *rig) restartEdge(ctx context.Context, res *Results) error {
	sigterm := time.Now()
	stopped, listening, started, err := r.replaceEdge(ctx)
	if err != nil {
		return err
	}
	if stopped < 0 {
		for _, p := range r.available(kindAdit) {
			res.note(figRestart, "ms", p.name, "edge killed after 20s")
		}
	}
	var live []*path
	for _, p := range r.paths {
		if p.kind == kindAdit && p.na == "" {
			live = append(live, p)
		}
	}
	type result struct {
		p   *path
		err error
		at  time.Time
	}
	done := make(chan result, len(live))
	for _, p := range live {
		go func() {
			err := waitServing(ctx, p.target, p.conn, r.cfg.startTimeout)
			done <- result{p, err, time.Now()}
		}()
	}
	for range live {
		x := <-done
		if x.err != nil {
			res.note(figRestart, "ms", x.p.name, "error: "+x.err.Error())
			continue
		}
		res.set(figRestart, "ms", x.p.name, ms(x.at.Sub(sigterm)))
		res.set(figRestartStart, "ms", x.p.name, ms(x.at.Sub(started)))
		res.set(figRestartListen, "ms", x.p.name, ms(listening))
		if stopped >= 0 {
			res.set(figRestartStop, "ms", x.p.name, ms(stopped))
		}
		r.cfg.logf("%s: edge restart → 200 in %s (%s after the new edge started)", x.p.name,
			x.at.Sub(sigterm).Round(time.Millisecond), x.at.Sub(started).Round(time.Millisecond))
	}
	return nil
}

// replaceEdge stops the edge (SIGTERM; SIGKILL after 20s, reported as a
// negative stopped) and starts a new one with the same data dir and tunnel
// port; the adit paths' targets point at it. The connectors reconnect by
// themselves. It returns how long the old edge took to exit, how long the
// new one took to listen, and when it was started.
func (r *rig) replaceEdge(ctx context.Context) (stopped, listening time.Duration, started time.Time, err error) {
	sigterm := time.Now()
	if killed := r.edge.stop(20 * time.Second); killed {
		r.cfg.logf("edge restart: the edge did not exit within 20s of SIGTERM and was killed; its last lines:\n%s", r.edge.out.tail(15))
		stopped = -1
	} else {
		stopped = time.Since(sigterm)
	}
	started = time.Now()
	e, err := r.startEdge(ctx)
	if err != nil {
		return stopped, 0, started, err
	}
	listening = time.Since(started)
	r.edge = e
	// The new edge's API listens on another port: log the CLI in again,
	// for the scenarios that administer the edge (waf, https).
	if _, err := runCmd(ctx, time.Minute, r.bin, r.env(), e.login...); err != nil {
		return stopped, listening, started, err
	}
	for _, p := range r.paths {
		if (p.kind == kindAdit || p.kind == kindAccess) && p.na == "" {
			p.target.base = "http://" + e.httpAddr
		}
	}
	return stopped, listening, started, nil
}

// close stops every child (SIGTERM, then SIGKILL after a grace period) and
// removes the temp dir.
func (r *rig) close() {
	for _, c := range r.closers {
		c()
	}
	// Connectors first, so they do not spend the edge's shutdown
	// reconnecting; the origin last.
	for i := len(r.procs) - 1; i >= 0; i-- {
		r.procs[i].stop(10 * time.Second)
	}
	if r.tmp != "" {
		os.RemoveAll(r.tmp)
	}
}

// freeUDPAndTCPAddr finds a 127.0.0.1 port free for both UDP (QUIC) and TCP
// (the WebSocket transport), to give the edge a tunnel port it can keep
// across a restart.
func freeUDPAndTCPAddr() (string, error) {
	var lastErr error
	for range 50 {
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("bench: %w", err)
		}
		addr := u.LocalAddr().String()
		t, err := net.Listen("tcp", addr)
		u.Close()
		if err != nil {
			lastErr = err
			continue
		}
		t.Close()
		return addr, nil
	}
	return "", fmt.Errorf("bench: no port free for both udp and tcp: %w", lastErr)
}

// available returns the paths that can run a scenario: available, and of
// one of kinds.
func (r *rig) available(kinds ...pathKind) []*path {
	var ps []*path
	for _, p := range r.paths {
		for _, k := range kinds {
			if p.kind == k && p.na == "" {
				ps = append(ps, p)
			}
		}
	}
	return ps
}

// checkCompare refuses a --compare URL that is not http to a loopback IP:
// the harness sends traffic only to this machine.
func checkCompare(raw string) error {
	if !strings.HasPrefix(raw, "http://") {
		return fmt.Errorf("%q: want http://127.0.0.1:PORT", raw)
	}
	hostport := strings.TrimPrefix(raw, "http://")
	if i := strings.IndexByte(hostport, '/'); i >= 0 {
		if hostport[i:] != "/" {
			return fmt.Errorf("%q: give the base URL, without a path (the harness adds /1k, /download, ...)", raw)
		}
		hostport = hostport[:i]
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%q: %w", raw, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: the harness only sends traffic to loopback IPs like 127.0.0.1", raw)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: bad port", raw)
	}
	return nil
}
