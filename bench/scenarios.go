package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/adit-dev/adit/bench/procstat"
)

// run sets up the rig, runs the selected scenarios and returns the results.
// On an error after setup it returns the results so far with the error.
func run(ctx context.Context, cfg *config) (*Results, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	res := &Results{
		Started: time.Now(),
		Machine: describeMachine(),
		Settings: Settings{
			Scenarios:    cfg.scenarios,
			Duration:     cfg.duration.String(),
			Warmup:       cfg.warmup.String(),
			Concurrency:  cfg.concurrency,
			BigSize:      cfg.bigSize,
			IdleWS:       cfg.idleWS,
			Rate:         cfg.rate,
			RateDuration: cfg.rateDuration.String(),
			LoadGen:      cfg.loadgen,
		},
	}
	if cfg.has("idle-ws") {
		// Per WebSocket the harness, the edge, the connector and the origin
		// hold a socket each. If the limit cannot be raised enough, open
		// fewer and say so.
		const reserve = 1024
		limit, err := raiseNoFile(uint64(cfg.idleWS + reserve))
		if err != nil {
			if n := int(limit) - reserve; n < cfg.idleWS {
				res.Settings.IdleWSNote = fmt.Sprintf("%d requested; RLIMIT_NOFILE is %d and cannot be raised", cfg.idleWS, limit)
				cfg.logf("idle WebSockets: %s: opening %d", res.Settings.IdleWSNote, n)
				cfg.idleWS = max(n, 1)
				res.Settings.IdleWS = cfg.idleWS
			}
		}
	}
	r := &rig{cfg: cfg}
	defer r.close()
	err := r.setup(ctx, res)
	if err == nil {
		for _, s := range allScenarios {
			if !cfg.has(s) {
				continue
			}
			if err = runScenario(ctx, r, res, s); err != nil {
				break
			}
		}
	}
	for _, p := range r.paths {
		res.Paths = append(res.Paths, PathInfo{Name: p.name, URL: p.target.base, Host: p.target.host, Available: p.na == "", Reason: p.na})
	}
	res.sortFigures()
	res.finish(r.paths)
	res.Seconds = time.Since(res.Started).Seconds()
	res.Machine.LoadEnd = loadAvg()
	if err != nil {
		if len(res.Paths) == 0 {
			return nil, err
		}
		return res, err
	}
	return res, nil
}

func runScenario(ctx context.Context, r *rig, res *Results, name string) error {
	var err error
	switch name {
	case "rate":
		err = runRate(ctx, r, res)
	case "idle-ws":
		err = runIdleWS(ctx, r, res)
	case "small":
		err = runSmall(ctx, r, res)
	case "access":
		err = runAccess(ctx, r, res) // access.go
	case "download", "upload":
		err = runBig(ctx, r, res, name)
	case "restart":
		err = r.restartEdge(ctx, res)
	case "waf":
		err = runWAF(ctx, r, res) // shield.go
	case "flood":
		err = runFlood(ctx, r, res)
	case "https":
		err = runHTTPS(ctx, r, res) // https.go
	case "peer":
		err = runPeer(ctx, r, res) // peer.go
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("bench: %s: %w", name, err)
	}
	return nil
}

// runSmall measures 1 KiB GETs at each concurrency on every path.
func runSmall(ctx context.Context, r *rig, res *Results) error {
	profileAt := res.closestConcurrency(50)
	for _, c := range r.cfg.concurrency {
		for _, p := range r.available(kindDirect, kindProxy2, kindAdit, kindAccess, kindCompare) {
			var prof *perfRun
			if r.cfg.cpuprofileDir != "" && c == profileAt && p.kind == kindAdit {
				prof = startPerf(r.cfg, p, fmt.Sprintf("get-c%d", c), r.edge.pid(), r.cfg.warmup+r.cfg.duration)
			}
			var gprof *pprofRun
			if c == profileAt && (p.kind == kindAdit || p.kind == kindAccess || p.kind == kindProxy2) {
				gprof = startPprof(r.cfg, p, fmt.Sprintf("get-c%d", c), r.edge.metrics, r.cfg.warmup+r.cfg.duration)
			}
			err := r.warmUp(ctx, p.target, c)
			before, serr := r.origin.stats()
			allocs := startAllocs(r, p)
			meter := r.newCPUMeter(p, r.wrk == nil)
			var s latencyStats
			if err == nil {
				s, err = r.smallGETs(ctx, p.target, c, meter)
			}
			after, aerr := r.origin.stats()
			if serr == nil && aerr == nil {
				allocs.finish(res, r, p, c, after.Served1k-before.Served1k)
			}
			prof.finish()
			gprof.finish()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if serr != nil || aerr != nil {
				return errors.Join(serr, aerr)
			}
			accepted := after.Accepted - before.Accepted
			f := func(m string) figName { return figGet(c, m) }
			if err != nil {
				res.note(f("req/s"), "req/s", p.name, "error: "+err.Error())
				r.cfg.logf("GET 1KiB c=%d %s: %v", c, p.name, err)
				continue
			}
			res.set(f("req/s"), "req/s", p.name, s.RequestsPerSecond)
			res.set(f("p50"), "µs", p.name, us(s.P50))
			res.set(f("p99"), "µs", p.name, us(s.P99))
			res.set(f("p99.9"), "µs", p.name, us(s.P999))
			if p.kind != kindCompare || r.cfg.originAddr != "127.0.0.1:0" {
				res.set(f("origin conns opened"), "conns", p.name, float64(accepted))
			}
			if s.Errors > 0 {
				res.note(f("req/s"), "req/s", p.name, fmt.Sprintf("%d errors; first: %v", s.Errors, s.firstErr))
			}
			r.cfg.logf("GET 1KiB c=%d %s: %.0f req/s, p50 %s, p99 %s, p99.9 %s, %d errors, %d origin connections opened", c, p.name,
				s.RequestsPerSecond, s.P50.Round(time.Microsecond), s.P99.Round(time.Microsecond), s.P999.Round(time.Microsecond), s.Errors, accepted)
			used, served, err := meter.used()
			switch {
			case err != nil:
				r.cfg.logf("GET 1KiB c=%d %s: CPU: %v", c, p.name, err)
			case served <= 0:
				// A --compare tunnel to another origin (no --origin-addr).
				r.cfg.logf("GET 1KiB c=%d %s: CPU: this origin answered no request in the window", c, p.name)
			default:
				per := cpuPer(used, float64(served), time.Microsecond, p.kind != kindCompare)
				r.cfg.logf("GET 1KiB c=%d %s: %s", c, p.name, res.setCPU(f("").scenario, unitCPUReq, p.name, per))
			}
		}
		res.setCeiling(figGet(c, "").scenario)
	}
	return nil
}

// warmUp loads t with small GETs before a measurement with wrk: a
// separate run, so that the origin's counters can leave it out. The Go
// client warms up at the start of its measured run.
func (r *rig) warmUp(ctx context.Context, t target, concurrency int) error {
	if r.wrk == nil || r.cfg.warmup == 0 {
		return nil
	}
	if _, err := r.wrk.run(ctx, t, "/1k", concurrency, r.cfg.warmup); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	return nil
}

// smallGETs measures 1 KiB GETs to t at concurrency, with wrk or the Go
// client, and marks the measured window on meter: with the Go client
// when the warm-up ends and when the window closes; with wrk (whose
// warm-up was a run of its own) just before it starts and just after it
// exits, and the wrk process's CPU time is the client's.
func (r *rig) smallGETs(ctx context.Context, t target, concurrency int, meter *cpuMeter) (latencyStats, error) {
	if r.wrk != nil {
		meter.mark()
		s, err := r.wrk.run(ctx, t, "/1k", concurrency, r.cfg.duration)
		meter.mark()
		meter.set("client", s.cpu)
		return s, err
	}
	return closedLoop(ctx, t, "/1k", concurrency, r.cfg.warmup, r.cfg.duration, meter.mark)
}

// allocRun holds the allocation counters of an adit path's edge and
// connector at the start of a small-GET run.
type allocRun struct {
	addrs  []string // edge, connector metrics addresses
	before []allocCounters
}

// startAllocs reads the allocation counters of p's edge and connector; nil
// for other paths or when they cannot be read.
func startAllocs(r *rig, p *path) *allocRun {
	if p.kind != kindAdit && p.kind != kindAccess {
		return nil
	}
	a := &allocRun{addrs: []string{r.edge.metrics, p.metrics}}
	for _, addr := range a.addrs {
		c, err := readAllocs(addr)
		if err != nil {
			r.cfg.logf("allocations of %s: %v", p.name, err)
			return nil
		}
		a.before = append(a.before, c)
	}
	return a
}

// finish records what the edge and the connector allocated per request
// over the run: requests is what the origin answered meanwhile (with the
// Go client, warm-up and stragglers included, as the counters are).
func (a *allocRun) finish(res *Results, r *rig, p *path, concurrency int, requests int64) {
	if a == nil || requests <= 0 {
		return
	}
	for i, side := range []string{"edge", "connector"} {
		after, err := readAllocs(a.addrs[i])
		if err != nil {
			r.cfg.logf("allocations of %s: %v", p.name, err)
			return
		}
		n := float64(requests)
		res.set(figGet(concurrency, side+" alloc/req"), "KB", p.name, (after.bytes-a.before[i].bytes)/n/1e3)
		res.set(figGet(concurrency, side+" allocs/req"), "objects", p.name, (after.objects-a.before[i].objects)/n)
	}
}

// runBig measures one download or upload of --big-size on every path.
func runBig(ctx context.Context, r *rig, res *Results, dir string) error {
	f := res.figDownload()
	do := download
	if dir == "upload" {
		f, do = res.figUpload(), upload
	}
	for _, p := range r.available(kindDirect, kindProxy2, kindAdit, kindCompare) {
		var prof *perfRun
		if r.cfg.cpuprofileDir != "" && p.kind == kindAdit {
			// Profile the first few seconds: the steady state.
			prof = startPerf(r.cfg, p, dir, r.edge.pid(), min(3*time.Second, r.cfg.bigTimeout))
		}
		var gprof *pprofRun
		if p.kind == kindAdit {
			gprof = startPprof(r.cfg, p, dir, r.edge.metrics, min(3*time.Second, r.cfg.bigTimeout))
		}
		meter := r.newCPUMeter(p, true)
		meter.mark()
		x, err := do(ctx, p.target, r.cfg.bigSize, r.cfg.bigTimeout)
		meter.mark()
		prof.finish()
		gprof.finish()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			res.note(f, "MB/s", p.name, "error: "+err.Error())
			r.cfg.logf("%s %s: %v", f.scenario, p.name, err)
			continue
		}
		res.set(f, "MB/s", p.name, x.MBps())
		partial := ""
		if x.Partial {
			partial = fmt.Sprintf(" (partial: %s of %s in the %s limit)", sizeString(x.Bytes), sizeString(r.cfg.bigSize), r.cfg.bigTimeout)
			res.note(f, "MB/s", p.name, "partial")
		}
		r.cfg.logf("%s %s: %.0f MB/s%s", f.scenario, p.name, x.MBps(), partial)
		used, _, err := meter.used()
		if err != nil {
			r.cfg.logf("%s %s: CPU: %v", f.scenario, p.name, err)
			continue
		}
		if p.kind == kindCompare && r.cfg.originAddr == "127.0.0.1:0" {
			delete(used, "origin") // the tunnel reaches another origin
		}
		per := cpuPer(used, float64(x.Bytes)/1e9, time.Second, p.kind != kindCompare)
		r.cfg.logf("%s %s: %s", f.scenario, p.name, res.setCPU(f.scenario, unitCPUGB, p.name, per))
	}
	return nil
}

// runRate sends a fixed request rate through every path (direct is the
// latency baseline), sampling the memory of the edge and an adit path's
// connector every 500ms and their CPU time before and after. RSS (VmRSS) and RSS anon (RssAnon: the
// heap and stacks, without the binary's file pages) are peak samples; CPU
// is the percentage of one core over the run.
func runRate(ctx context.Context, r *rig, res *Results) error {
	f := res.figRate
	for _, p := range r.available(kindDirect, kindProxy2, kindAdit, kindCompare) {
		sides := map[string]int{}
		if p.kind == kindAdit {
			sides = map[string]int{"edge": r.edge.pid(), "connector": p.conn.pid()}
			procstat.SettleRSS(ctx, []int{r.edge.pid(), p.conn.pid()}, 5*time.Second)
		}
		cpu0 := map[string]time.Duration{}
		peak := map[string]procstat.Mem{}
		for side, pid := range sides {
			cpu0[side], _ = procstat.CPU(pid)
		}
		sample := func() {
			for side, pid := range sides {
				if m, err := procstat.ReadMem(pid); err == nil {
					pk := peak[side]
					peak[side] = procstat.Mem{RSS: max(pk.RSS, m.RSS), Anon: max(pk.Anon, m.Anon)}
				}
			}
		}
		start := time.Now()
		s, err := fixedRate(ctx, p.target, "/1k", r.cfg.rate, r.cfg.rateDuration, sample)
		elapsed := time.Since(start)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			res.note(f("p50"), "µs", p.name, "error: "+err.Error())
			r.cfg.logf("%s %s: %v", f("").scenario, p.name, err)
			continue
		}
		sample()
		res.set(f("p50"), "µs", p.name, us(s.P50))
		res.set(f("p99"), "µs", p.name, us(s.P99))
		res.set(f("p99.9"), "µs", p.name, us(s.P999))
		res.set(f("sends late p99"), "µs", p.name, us(s.LateP99))
		if s.Errors > 0 {
			res.note(f("p50"), "µs", p.name, fmt.Sprintf("%d errors; first: %v", s.Errors, s.firstErr))
		}
		msg := fmt.Sprintf("p50 %s, p99 %s, sends late p99 %s", s.P50.Round(time.Microsecond), s.P99.Round(time.Microsecond), s.LateP99.Round(time.Microsecond))
		for _, side := range []string{"edge", "connector"} {
			pid, ok := sides[side]
			if !ok {
				continue
			}
			cpu1, err := procstat.CPU(pid)
			if err != nil {
				return fmt.Errorf("%s %s: %w", p.name, side, err)
			}
			cpuPct := 100 * (cpu1 - cpu0[side]).Seconds() / elapsed.Seconds()
			res.set(f(side+" RSS"), "MB", p.name, float64(peak[side].RSS)/1e6)
			res.set(f(side+" RSS anon"), "MB", p.name, float64(peak[side].Anon)/1e6)
			res.set(f(side+" CPU"), "% of a core", p.name, cpuPct)
			msg += fmt.Sprintf(", %s %.1f MB (%.1f MB anon) %.0f%% CPU", side, float64(peak[side].RSS)/1e6, float64(peak[side].Anon)/1e6, cpuPct)
		}
		r.cfg.logf("fixed %d req/s %s: %s", r.cfg.rate, p.name, msg)
	}
	return nil
}

// runIdleWS opens --idle-ws WebSockets through each adit path and charges
// the growth of the edge's and the connector's RSS to them. Each path after
// the first gets a new edge process: the old one would hand the memory it
// kept from the previous path's WebSockets to the new ones, and show
// almost no growth.
func runIdleWS(ctx context.Context, r *rig, res *Results) error {
	f := res.figIdle
	for i, p := range r.available(kindAdit) {
		if i > 0 {
			if _, _, _, err := r.replaceEdge(ctx); err != nil {
				return fmt.Errorf("idle WebSockets %s: a fresh edge: %w", p.name, err)
			}
			if err := waitServing(ctx, p.target, p.conn, r.cfg.startTimeout); err != nil {
				return fmt.Errorf("idle WebSockets %s: after a fresh edge: %w", p.name, err)
			}
		}
		pids := []int{r.edge.pid(), p.conn.pid()}
		procstat.SettleRSS(ctx, pids, 5*time.Second)
		before := make([]int64, len(pids))
		for i, pid := range pids {
			before[i], _ = procstat.RSS(pid)
		}
		start := time.Now()
		conns, err := openWebSockets(ctx, p.target, r.cfg.idleWS, 64)
		opened := time.Since(start)
		if ctx.Err() != nil {
			closeAll(conns)
			return ctx.Err()
		}
		if err != nil {
			res.note(f("open"), "conns", p.name, err.Error())
			r.cfg.logf("idle WebSockets %s: %v", p.name, err)
		}
		if len(conns) == 0 {
			continue
		}
		procstat.SettleRSS(ctx, pids, 3*time.Second)
		res.set(f("open"), "conns", p.name, float64(len(conns)))
		msg := fmt.Sprintf("%d open in %s", len(conns), opened.Round(time.Millisecond))
		for i, side := range []string{"edge", "connector"} {
			after, err := procstat.RSS(pids[i])
			if err != nil {
				closeAll(conns)
				return fmt.Errorf("%s %s: %w", p.name, side, err)
			}
			per := float64(after-before[i]) / 1024 / float64(len(conns))
			res.set(f(side+" per conn"), "KiB", p.name, per)
			res.set(f(side+" RSS"), "MB", p.name, float64(after)/1e6)
			msg += fmt.Sprintf(", %s %.1f KiB/conn (%.0f → %.0f MB)", side, per, float64(before[i])/1e6, float64(after)/1e6)
		}
		r.cfg.logf("idle WebSockets %s: %s", p.name, msg)
		closeAll(conns)
	}
	return nil
}

// sortFigures orders the table: small GETs, transfers, fixed rate, idle
// WebSockets, startup, restart. Within a kind, scenarios keep the order
// they first appeared in; within a scenario, the rows keep theirs, except
// that the CPU rows come last, in cpuRowRank's order.
func (r *Results) sortFigures() {
	rank := func(f *Figure) int {
		for i, prefix := range []string{"GET", "download", "upload", "fixed", "", "startup", "edge restart"} {
			if prefix != "" && strings.HasPrefix(f.Scenario, prefix) {
				return i
			}
		}
		return 4 // idle WebSockets
	}
	first := map[string]int{}
	for i, f := range r.Figures {
		if _, ok := first[f.Scenario]; !ok {
			first[f.Scenario] = i
		}
	}
	slices.SortStableFunc(r.Figures, func(a, b *Figure) int {
		return cmp.Or(rank(a)-rank(b), first[a.Scenario]-first[b.Scenario], cpuRowRank(a)-cpuRowRank(b))
	})
}

// perfRun is a `perf record` of the edge and one connector.
type perfRun struct {
	cfg   *config
	cmds  []*exec.Cmd
	files []string
}

// startPerf records CPU profiles of the edge and p's connector for d, if
// perf is installed; otherwise it logs once and returns nil. The files are
// named PATH-SCENARIO-SIDE.perf.data, with a flat report in .txt.
func startPerf(cfg *config, p *path, scenario string, edgePID int, d time.Duration) *perfRun {
	perf, err := exec.LookPath("perf")
	if err != nil {
		cfg.logf("no perf on PATH; not recording CPU profiles")
		cfg.cpuprofileDir = ""
		return nil
	}
	if err := os.MkdirAll(cfg.cpuprofileDir, 0o755); err != nil {
		cfg.logf("cpuprofile-dir: %v", err)
		return nil
	}
	run := &perfRun{cfg: cfg}
	secs := strconv.FormatFloat(d.Seconds(), 'f', 1, 64)
	for side, pid := range map[string]int{"edge": edgePID, "connector": p.conn.pid()} {
		file := filepath.Join(cfg.cpuprofileDir, p.name+"-"+scenario+"-"+side+".perf.data")
		cmd := exec.Command(perf, "record", "-q", "-F", "999", "-g", "-p", strconv.Itoa(pid), "-o", file, "--", "sleep", secs)
		if err := cmd.Start(); err != nil {
			cfg.logf("perf: %v", err)
			continue
		}
		run.cmds = append(run.cmds, cmd)
		run.files = append(run.files, file)
	}
	return run
}

// finish waits for the recordings and writes a flat report next to each.
func (p *perfRun) finish() {
	if p == nil {
		return
	}
	for i, cmd := range p.cmds {
		if err := cmd.Wait(); err != nil {
			p.cfg.logf("perf record: %v", err)
			continue
		}
		out, err := exec.Command("perf", "report", "-i", p.files[i], "--stdio", "--no-children",
			"-g", "none", "--percent-limit", "0.5", "--sort", "symbol").Output()
		if err != nil {
			p.cfg.logf("perf report: %v", err)
			continue
		}
		// perf pads every line to the terminal width with empty columns.
		var trimmed strings.Builder
		for line := range strings.SplitSeq(string(out), "\n") {
			trimmed.WriteString(strings.TrimRight(line, " -"))
			trimmed.WriteByte('\n')
		}
		txt := strings.TrimSuffix(p.files[i], ".perf.data") + ".txt"
		if err := os.WriteFile(txt, []byte(trimmed.String()), 0o644); err != nil {
			p.cfg.logf("perf report: %v", err)
			continue
		}
		p.cfg.logf("CPU profile: %s", txt)
	}
}
