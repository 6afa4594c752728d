package main

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adit-dev/adit/bench/procstat"
	"github.com/adit-dev/adit/control"
)

// scaleRun is one run's state: the edge, the tunnels, the connector
// processes.
type scaleRun struct {
	cfg     *config
	res     *Results
	tmp     string
	edge    *edge
	api     *control.Client
	tunnels []tunnelSpec
	fleet   []*child
	// The edge at rest with no tunnel, then with the routes and no
	// connection: what the per-route and per-connection figures subtract.
	empty, routed idle
}

// run measures, in order: the empty edge, the creates, the edge at
// --routes, the connections, steady requests, and a restart.
func run(ctx context.Context, cfg *config) (*Results, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	res := &Results{Settings: Settings{
		Tunnels: cfg.tunnels, Conns: cfg.conns, Routes: cfg.routes, Procs: cfg.procs, Addrs: max(cfg.addrs, 1),
		Protocol: cfg.protocol, Workers: cfg.workers, Quiet: cfg.quiet.String(), Rate: cfg.rate,
		CPUs: runtime.NumCPU(), Load: loadavg(), Start: time.Now().UTC(),
	}}
	defer func() { res.Settings.LoadEnd = loadavg() }()
	r := &scaleRun{cfg: cfg, res: res}
	var err error
	if r.tmp, err = os.MkdirTemp("", "adit-scale-"); err != nil {
		return res, fmt.Errorf("scale: %w", err)
	}
	defer r.close()
	raiseFileLimit()
	for _, step := range []func(context.Context) error{r.startEmpty, r.create, r.connect, r.requests, r.restart} {
		if err := step(ctx); err != nil {
			return res, err
		}
	}
	return res, nil
}

func (r *scaleRun) close() {
	for _, c := range r.fleet {
		c.stop(10 * time.Second)
	}
	if r.edge != nil {
		r.edge.stop(20 * time.Second)
	}
	if r.cfg.keep {
		r.cfg.logf("logs kept in %s", r.tmp)
		return
	}
	os.RemoveAll(r.tmp)
}

// idle is a process's resources at rest.
type idle struct {
	rss, anon  int64
	cpu        time.Duration // over the quiet window
	sys        time.Duration // the part of cpu spent in the kernel
	goroutines float64
}

// measureIdle settles the edge's RSS, then reads the edge's (and the
// connector processes') CPU time over the quiet window.
func (r *scaleRun) measureIdle(ctx context.Context, profile string) (edgeIdle idle, fleetCPU time.Duration, err error) {
	pid := r.edge.pid()
	procstat.SettleRSS(ctx, []int{pid}, 20*time.Second)
	if err := sleepCtx(ctx, r.cfg.rest); err != nil {
		return edgeIdle, 0, err
	}
	edgeIdle.goroutines, err = metric(ctx, "http://"+r.edge.metrics+"/metrics", "go_goroutines")
	if err != nil {
		return edgeIdle, 0, err
	}
	cpu := func() (edge, edgeSys, fleet time.Duration) {
		t, _ := procstat.ReadTimes(pid)
		return t.Total(), t.System, r.fleetCPU()
	}
	var profiled chan error
	if profile != "" {
		profiled = make(chan error, 1)
		go func() { profiled <- r.edge.cpuProfile(ctx, r.cfg.quiet, profile) }()
	}
	e0, s0, f0 := cpu()
	if err := sleepCtx(ctx, r.cfg.quiet); err != nil {
		return edgeIdle, 0, err
	}
	e1, s1, f1 := cpu()
	if profiled != nil {
		if err := <-profiled; err != nil {
			return edgeIdle, 0, err
		}
	}
	edgeIdle.cpu, edgeIdle.sys, fleetCPU = e1-e0, s1-s0, f1-f0
	m, err := procstat.ReadMem(pid)
	edgeIdle.rss, edgeIdle.anon = m.RSS, m.Anon
	return edgeIdle, fleetCPU, err
}

func (r *scaleRun) startEmpty(ctx context.Context) error {
	var err error
	if r.edge, err = startEdge(ctx, filepath.Join(r.tmp, "edge"), "", filepath.Join(r.tmp, "edge-1.log")); err != nil {
		return err
	}
	d, err := r.edge.waitReady(ctx)
	if err != nil {
		return err
	}
	r.res.add("edge start, empty (exec → /ready 200)", ms(d), "ms", "")
	if r.api, err = r.edge.client(); err != nil {
		return err
	}
	r.cfg.logf("edge ready in %s; measuring it idle for %s", d.Round(time.Millisecond), r.cfg.quiet)
	if r.empty, _, err = r.measureIdle(ctx, ""); err != nil {
		return err
	}
	r.res.add("edge RSS, empty", mb(r.empty.rss), "MB", fmt.Sprintf("anon %.1f MB", mb(r.empty.anon)))
	r.res.add("edge CPU idle, empty", pct(r.empty.cpu, r.cfg.quiet), "% of a core", "")
	return nil
}

// create makes the tunnels and routes, timing a window of creates at the
// start (empty edge) and at the end (at --routes routes).
func (r *scaleRun) create(ctx context.Context) error {
	cfg := r.cfg
	r.tunnels = make([]tunnelSpec, cfg.tunnels)
	w := min(cfg.window, cfg.tunnels)
	rate, err := parallel(ctx, cfg.workers, cfg.tunnels, w, func(ctx context.Context, i int) error {
		secret := make([]byte, 32)
		crand.Read(secret)
		t, err := r.api.CreateTunnel(ctx, fmt.Sprintf("scale-%d", i), secret)
		r.tunnels[i] = tunnelSpec{ID: t.ID, Secret: secret, Bind: bindAddr(i, cfg.addrs)}
		return err
	})
	if err != nil {
		return err
	}
	r.res.add("tunnel creates, empty edge", rate.first, "/s", fmt.Sprintf("first %d", w))
	cfg.logf("%d tunnels created (%.0f/s at first); creating %d routes", cfg.tunnels, rate.first, cfg.routes)
	if cfg.routes > 0 {
		w := min(cfg.window, cfg.routes)
		rate, err := parallel(ctx, cfg.workers, cfg.routes, w, func(ctx context.Context, i int) error {
			_, err := r.api.RouteDNS(ctx, r.tunnels[i%len(r.tunnels)].ID, routeHost(i), false)
			return err
		})
		if err != nil {
			return err
		}
		r.res.add("route creates, empty edge", rate.first, "/s", fmt.Sprintf("first %d", w))
		r.res.add(fmt.Sprintf("route creates at %d routes", cfg.routes), rate.last, "/s",
			fmt.Sprintf("last %d; %.2fx the first", w, rate.last/rate.first))
		// Tunnels created once the routes exist (not connected later).
		extra, err := parallel(ctx, cfg.workers, w, w, func(ctx context.Context, i int) error {
			_, err := r.api.CreateTunnel(ctx, fmt.Sprintf("scale-extra-%d", i), []byte("0123456789abcdef0123456789abcdef"))
			return err
		})
		if err != nil {
			return err
		}
		r.res.add(fmt.Sprintf("tunnel creates at %d routes", cfg.routes), extra.first, "/s",
			fmt.Sprintf("%d; %.2fx the empty edge's", w, extra.first/rate.first))
	}
	if size, err := r.edge.etcdSize(); err == nil {
		r.res.add("etcd database", mb(size), "MB", fmt.Sprintf("%d tunnels, %d routes", cfg.tunnels+min(cfg.window, cfg.routes), cfg.routes))
	}
	cfg.logf("routes created; measuring the edge idle for %s", cfg.quiet)
	if r.routed, _, err = r.measureIdle(ctx, ""); err != nil {
		return err
	}
	if cfg.routes > 0 {
		r.res.add("edge RSS per route", float64(r.routed.rss-r.empty.rss)/float64(cfg.routes), "bytes",
			fmt.Sprintf("tunnels included; %.0f MB at %d routes", mb(r.routed.rss), cfg.routes))
	}
	r.res.add("edge CPU idle, routes, no connection", pct(r.routed.cpu, cfg.quiet), "% of a core", "")
	return nil
}

func routeHost(i int) string { return fmt.Sprintf("r%d.scale.test", i) }

// rates are the create rates of the first and the last window of a run.
type rates struct{ first, last float64 }

// parallel runs f for 0..n-1 on workers goroutines, timing the first w
// and the last w calls to finish.
func parallel(ctx context.Context, workers, n, w int, f func(context.Context, int) error) (rates, error) {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		finished []time.Time
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				err := f(ctx, i)
				mu.Lock()
				finished = append(finished, time.Now())
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("scale: create %d: %w", i, err)
					next.Store(int64(n))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return rates{}, firstErr
	}
	if err := ctx.Err(); err != nil {
		return rates{}, fmt.Errorf("scale: creating: %w", err)
	}
	slices.SortFunc(finished, func(a, b time.Time) int { return a.Compare(b) })
	first := float64(w) / finished[w-1].Sub(start).Seconds()
	last := first
	if n > w {
		last = float64(w) / finished[n-1].Sub(finished[n-1-w]).Seconds()
	}
	return rates{first, last}, nil
}

// connect starts the connector processes and waits for the edge to count
// every connection, then measures the edge idle with them.
func (r *scaleRun) connect(ctx context.Context) error {
	cfg := r.cfg
	ca, err := os.ReadFile(r.edge.caPath())
	if err != nil {
		return fmt.Errorf("scale: %w", err)
	}
	want := cfg.tunnels * cfg.conns
	start := time.Now()
	work := r.startWork()
	for p := range cfg.procs {
		spec := fleetSpec{EdgeAddr: r.edge.tunnelAddr, EdgeCA: ca, Conns: cfg.conns, Protocol: cfg.protocol,
			Rate: cfg.dialRate / float64(cfg.procs)}
		for i := p; i < len(r.tunnels); i += cfg.procs {
			spec.Tunnels = append(spec.Tunnels, r.tunnels[i])
		}
		b, _ := json.Marshal(spec)
		path := filepath.Join(r.tmp, fmt.Sprintf("fleet-%d.json", p))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
		c, err := startChild(fmt.Sprintf("connectors %d", p), "connectors", filepath.Join(r.tmp, fmt.Sprintf("fleet-%d.log", p)), nil, path)
		if err != nil {
			return err
		}
		r.fleet = append(r.fleet, c)
	}
	cfg.logf("%d connector processes started; waiting for %d connections", cfg.procs, want)
	at, err := r.edge.waitConnections(ctx, want, cfg.logf)
	if err != nil {
		return err
	}
	r.res.add("connect all, cold", ms(at.Sub(start)), "ms", fmt.Sprintf("%d connections from %d processes and %d addresses, %.0f tunnels started/s",
		want, cfg.procs, max(cfg.addrs, 1), cfg.dialRate))
	r.addBusy(ctx, "registrations told to come back later, cold")
	r.addTurnedAway(ctx, "cold", filepath.Join(r.tmp, "edge-1.log"))
	work.add(r, "cold (connectors' start → all connected)")
	cfg.logf("all %d connected in %s; measuring the edge idle for %s", want, at.Sub(start).Round(time.Millisecond), cfg.quiet)
	conns, fleetCPU, err := r.measureIdle(ctx, cfg.profile)
	if err != nil {
		return err
	}
	if cfg.heap != "" {
		if err := r.edge.pprof(ctx, "heap", cfg.heap); err != nil {
			return err
		}
	}
	n := float64(want)
	r.res.add("edge RSS per connection", float64(conns.rss-r.routed.rss)/n, "bytes",
		fmt.Sprintf("anon %.0f; %.0f MB at %d connections", float64(conns.anon-r.routed.anon)/n, mb(conns.rss), want))
	r.res.add("edge goroutines per connection", (conns.goroutines-r.routed.goroutines)/n, "", fmt.Sprintf("%.0f in all", conns.goroutines))
	perConn := (conns.cpu - r.routed.cpu).Seconds() / cfg.quiet.Seconds() / n
	r.res.add("edge CPU per idle connection", perConn*100, "% of a core",
		fmt.Sprintf("%.1f%% of a core for all (%.0f%% of it in the kernel); 40,000 would take %.2f cores",
			pct(conns.cpu, cfg.quiet), 100*conns.sys.Seconds()/max(conns.cpu.Seconds(), 1e-9), perConn*40000))
	r.res.add("connector CPU per idle connection", fleetCPU.Seconds()/cfg.quiet.Seconds()/n*100, "% of a core",
		fmt.Sprintf("%d processes, %.1f%% of a core for all", cfg.procs, pct(fleetCPU, cfg.quiet)))
	return nil
}

// requests sends steady public requests, spread over all routes, and for
// an unknown hostname, timing each.
func (r *scaleRun) requests(ctx context.Context) error {
	cfg := r.cfg
	if cfg.rate == 0 || cfg.reqs <= 0 {
		return nil
	}
	cfg.logf("steady requests: %d/s for %s", cfg.rate, cfg.reqs)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	var (
		mu               sync.Mutex
		routed, unrouted []time.Duration
		failed           int
		wg               sync.WaitGroup
	)
	tick := time.NewTicker(time.Second / time.Duration(cfg.rate))
	defer tick.Stop()
	end := time.Now().Add(cfg.reqs)
	for i := 0; time.Now().Before(end); i++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		host, want := "unknown.scale.test", http.StatusNotFound
		if cfg.routes > 0 && i%2 == 0 {
			host, want = routeHost(rand.N(cfg.routes)), http.StatusNoContent
		}
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+r.edge.http+"/", nil)
			req.Host = host
			start := time.Now()
			resp, err := client.Do(req)
			d := time.Since(start)
			ok := err == nil && resp.StatusCode == want
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case !ok:
				failed++
			case want == http.StatusNotFound:
				unrouted = append(unrouted, d)
			default:
				routed = append(routed, d)
			}
		})
	}
	wg.Wait()
	note := fmt.Sprintf("p99 %.2f ms; %d requests at %d/s", ms(quantile(unrouted, 0.99)), len(unrouted), cfg.rate/2)
	r.res.add("unknown hostname → 404, p50", ms(quantile(unrouted, 0.5)), "ms", note)
	if cfg.routes > 0 {
		note := fmt.Sprintf("p99 %.2f ms; %d requests over %d routes", ms(quantile(routed, 0.99)), len(routed), cfg.routes)
		r.res.add("routed hostname → connector 204, p50", ms(quantile(routed, 0.5)), "ms", note)
	}
	if failed > 0 {
		r.res.add("requests failed", float64(failed), "", "a status other than the expected 204 or 404, or no answer")
	}
	return nil
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(math.Ceil(q*float64(len(ds))))-1)]
}

// restart stops the edge with SIGTERM, starts it again on the same data
// and tunnel port, and times until it counts every connection again.
func (r *scaleRun) restart(ctx context.Context) error {
	cfg := r.cfg
	if !cfg.restart {
		return nil
	}
	want := cfg.tunnels * cfg.conns
	cfg.logf("restarting the edge")
	sigterm := time.Now()
	work := r.startWork()
	stopped, killed := r.edge.stop(60 * time.Second)
	note := ""
	if killed {
		note = "killed after 60s"
	}
	r.res.add("edge stop (SIGTERM → exit)", ms(stopped), "ms", note)
	old := r.edge
	var err error
	if r.edge, err = startEdge(ctx, old.dataDir, old.tunnelAddr, filepath.Join(r.tmp, "edge-2.log")); err != nil {
		return err
	}
	d, err := r.edge.waitReady(ctx)
	if err != nil {
		return err
	}
	r.res.add(fmt.Sprintf("edge start at %d routes (exec → /ready 200)", cfg.routes), ms(d), "ms", "")
	at, err := r.edge.waitConnections(ctx, want, cfg.logf)
	if err != nil {
		return err
	}
	r.res.add("restart → all connected", ms(at.Sub(sigterm)), "ms",
		fmt.Sprintf("from SIGTERM; %.0f ms from the new edge's start; %d connections", ms(at.Sub(r.edge.started)), want))
	r.addBusy(ctx, "registrations told to come back later, restart")
	r.addTurnedAway(ctx, "restart", filepath.Join(r.tmp, "edge-2.log"))
	work.edge = 0 // the new edge's CPU counts from its start
	work.add(r, "restart (SIGTERM → all connected; the edge's from its start)")
	return nil
}

// addBusy adds the registrations the edge has told to come back later
// (admission control, the per-address cap) since it started.
func (r *scaleRun) addBusy(ctx context.Context, name string) {
	n, err := metric(ctx, "http://"+r.edge.metrics+"/metrics", `adit_edge_registrations_total{result="busy"}`)
	if err != nil {
		n = 0 // the series appears with the first one
	}
	r.res.add(name, n, "", fmt.Sprintf("%d connections", r.cfg.tunnels*r.cfg.conns))
}

// addTurnedAway adds what else turned connections away while they
// connected (phase "cold" or "restart"): the handshakes the edge refused
// (its handshake bound; the series is absent on an edge without one) and
// the connections it closed as silent, counted in its log.
func (r *scaleRun) addTurnedAway(ctx context.Context, phase, edgeLog string) {
	n := 0.0
	for _, tr := range []string{"quic", "websocket"} {
		v, err := metric(ctx, "http://"+r.edge.metrics+"/metrics", `adit_edge_handshakes_refused_total{transport="`+tr+`"}`)
		if err == nil {
			n += v
		}
	}
	r.res.add("handshakes refused, "+phase, n, "", "the edge's handshake bound, both transports")
	r.res.add("connections closed as silent, "+phase, float64(countLines(edgeLog, "connector silent")), "",
		"the edge's log: a connector's heartbeats not heard for 6 s")
	r.res.add("edge paused, "+phase, float64(countLines(edgeLog, "the edge was paused")), "times",
		"the edge's log: its watchdog did not run for 2 s or more")
}

// work is what a phase cost: CPU and dropped UDP packets since its start.
type work struct {
	edge, fleet time.Duration // CPU time at the start
	udpDrops    int64         // the system's UDP receive-buffer drops at the start
}

func (r *scaleRun) startWork() work {
	e, _ := procstat.CPU(r.edge.pid())
	return work{edge: e, fleet: r.fleetCPU(), udpDrops: udpRcvbufErrors()}
}

// add adds the phase's edge and connector CPU and the UDP packets the
// kernel dropped for full receive buffers (the whole system's count; on
// this benchmark's loopback, mostly its own).
func (w work) add(r *scaleRun, phase string) {
	e, _ := procstat.CPU(r.edge.pid())
	r.res.add("edge CPU, "+phase, (e - w.edge).Seconds(), "CPU-s", "")
	r.res.add("connector processes' CPU, "+phase, (r.fleetCPU() - w.fleet).Seconds(), "CPU-s", "")
	r.res.add("UDP packets dropped, "+phase, float64(udpRcvbufErrors()-w.udpDrops), "", "receive buffers full (/proc/net/snmp RcvbufErrors, whole system)")
}

func (r *scaleRun) fleetCPU() time.Duration {
	var t time.Duration
	for _, c := range r.fleet {
		ft, _ := procstat.CPU(c.pid())
		t += ft
	}
	return t
}

// udpRcvbufErrors is the kernel's count of UDP packets dropped because a
// socket's receive buffer was full (0 if it cannot be read).
func udpRcvbufErrors() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0
	}
	var names []string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == "RcvbufErrors" && i < len(f) {
				n, _ := strconv.ParseInt(f[i], 10, 64)
				return n
			}
		}
	}
	return 0
}

// countLines counts the lines of the file at path that contain substr
// (0 if it cannot be read).
func countLines(path, substr string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

// loadavg is the system's load average over 1, 5 and 15 minutes.
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mb(b int64) float64         { return float64(b) / 1e6 }

// pct is CPU time over a wall-time window, in percent of one core.
func pct(cpu, window time.Duration) float64 { return 100 * cpu.Seconds() / window.Seconds() }
