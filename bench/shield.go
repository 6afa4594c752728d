package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The shield's scenarios (issue 12), on the first adit path:
//
//   - waf: c=50 1 KiB GETs with the WAF off, then with the OWASP CRS in
//     block mode at paranoia level 1 (`adit waf set HOST --mode block`):
//     req/s and the edge's CPU per request, and their ratios.
//   - flood: a well-behaved client (its own address, 127.0.0.2) sends
//     --flood-rate req/s alone, then while one address (127.0.0.3) sends
//     as fast as --flood-workers connections allow and another (127.0.0.4)
//     opens --flood-idle idle connections: its success rate and p99 both
//     ways, in --flood-rounds alternating rounds (a shared machine's other
//     load then weighs on both alike). The attacker is a process of its
//     own (flooder.go), as it would be: the client's latencies are not
//     its own process's scheduler and GC under the flood. The edge is
//     restarted for each --flood-inflight value (0: its default flood
//     settings; N: --flood-inflight N, the cap on requests in flight
//     past which the heaviest senders are shed), with --flood-ratio; then
//     the same flood against the origin directly, for reference. Each run
//     also says how many CPUs each process kept busy while flooded (and
//     the machine's other processes, from /proc/stat).

var figWAF = func(m string) figName { return figName{"WAF GET 1KiB c=50", m} }

// aditPath is the first available adit path.
func (r *rig) aditPath() *path {
	if ps := r.available(kindAdit); len(ps) > 0 {
		return ps[0]
	}
	return nil
}

func runWAF(ctx context.Context, r *rig, res *Results) error {
	p := r.aditPath()
	if p == nil {
		return nil
	}
	measure := func(label string) (rps, edgeUS float64, err error) {
		if err := r.warmUp(ctx, p.target, 50); err != nil {
			return 0, 0, err
		}
		meter := r.newCPUMeter(p, r.wrk == nil)
		s, err := r.smallGETs(ctx, p.target, 50, meter)
		if err != nil {
			return 0, 0, err
		}
		used, served, err := meter.used()
		if err != nil {
			return 0, 0, err
		}
		if served <= 0 {
			return 0, 0, fmt.Errorf("the origin answered no request")
		}
		edgeUS = float64(used["edge"].Microseconds()) / float64(served)
		res.set(figWAF("req/s "+label), "req/s", p.name, s.RequestsPerSecond)
		res.set(figWAF("p99 "+label), "µs", p.name, us(s.P99))
		res.set(figWAF("edge CPU/req "+label), "µs", p.name, edgeUS)
		r.cfg.logf("WAF %s %s: %.0f req/s, p99 %s, edge %.1f µs CPU per request, %d errors", label, p.name, s.RequestsPerSecond, s.P99.Round(time.Microsecond), edgeUS, s.Errors)
		return s.RequestsPerSecond, edgeUS, nil
	}
	offRPS, offCPU, err := measure("off")
	if err != nil {
		return err
	}
	if _, err := runCmd(ctx, 2*time.Minute, r.bin, r.env(), "waf", "set", p.hostname, "--mode", "block", "--paranoia", "1"); err != nil {
		return err
	}
	defer runCmd(context.Background(), time.Minute, r.bin, r.env(), "waf", "delete", p.hostname)
	// The setting applies once the edge has compiled it: an attack is then refused.
	if err := waitStatus(ctx, p.target, "/1k?id=1%27%20OR%201%3D1--", http.StatusForbidden, time.Minute); err != nil {
		return fmt.Errorf("the WAF did not start blocking: %w", err)
	}
	onRPS, onCPU, err := measure("CRS PL1 block")
	if err != nil {
		return err
	}
	res.set(figWAF("req/s ratio block/off"), "x", p.name, onRPS/offRPS)
	res.set(figWAF("edge CPU/req ratio block/off"), "x", p.name, onCPU/offCPU)
	r.cfg.logf("WAF %s: CRS PL1 block vs off: %.2fx the edge's CPU per request, %.2fx the req/s", p.name, onCPU/offCPU, onRPS/offRPS)
	return nil
}

// waitStatus polls path until it answers want.
func waitStatus(ctx context.Context, t target, path string, want int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := newClient(1, 5*time.Second)
	defer c.CloseIdleConnections()
	for {
		req, err := t.request(ctx, "GET", path, nil)
		if err != nil {
			return err
		}
		if resp, err := c.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// clientFrom is an HTTP client whose connections come from ip.
func clientFrom(ip string, conns int) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: d.DialContext, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}}
}

// pacedRun is what a paced client saw: the latencies of the requests
// answered 200 (from when each was due), how many it sent, and why the
// others failed.
type pacedRun struct {
	lat   []time.Duration
	sent  int
	fails map[string]int
}

func (a *pacedRun) add(b pacedRun) {
	a.lat = append(a.lat, b.lat...)
	a.sent += b.sent
	if a.fails == nil {
		a.fails = map[string]int{}
	}
	for k, v := range b.fails {
		a.fails[k] += v
	}
}

// success is the share of the requests answered 200; p99 is theirs.
func (a *pacedRun) success() float64 {
	if a.sent == 0 {
		return 0
	}
	return float64(len(a.lat)) / float64(a.sent)
}

func (a *pacedRun) p99() time.Duration {
	if len(a.lat) == 0 {
		return 0
	}
	slices.Sort(a.lat)
	return quantile(a.lat, 0.99)
}

// paced sends rate GETs per second from ip for d.
func paced(ctx context.Context, t target, ip string, rate int, d time.Duration) pacedRun {
	c := clientFrom(ip, 64)
	defer c.CloseIdleConnections()
	var (
		mu  sync.Mutex
		run = pacedRun{fails: map[string]int{}}
		wg  sync.WaitGroup
	)
	fail := func(why string) {
		mu.Lock()
		run.fails[why]++
		mu.Unlock()
	}
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := 0; ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(i) * interval)
		if due.Sub(start) >= d {
			break
		}
		time.Sleep(time.Until(due))
		run.sent++
		wg.Go(func() {
			req, err := t.request(ctx, "GET", "/1k", nil)
			if err != nil {
				return
			}
			resp, err := c.Do(req)
			if err != nil {
				fail(err.Error())
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				fail(resp.Status)
				return
			}
			mu.Lock()
			run.lat = append(run.lat, time.Since(due))
			mu.Unlock()
		})
	}
	wg.Wait()
	return run
}

// runFlood measures the well-behaved client alone and flooded in
// alternating rounds (--flood-rounds), pooling each condition's
// latencies, so that what else runs on the machine weighs on both alike:
// through the first adit path, and for reference against the origin
// directly (a plain Go server, no shield: what the same flood does to a
// neighbour on the same CPUs when nothing sheds it).
func runFlood(ctx context.Context, r *rig, res *Results) error {
	p := r.aditPath()
	if p == nil {
		return nil
	}
	cfg := r.cfg
	for _, n := range cfg.floodInflight {
		// An edge with the flood settings of this run.
		r.edgeArgs = []string{}
		label := "edge defaults"
		if n != 0 {
			r.edgeArgs = append(r.edgeArgs, "--flood-inflight", strconv.Itoa(n))
			label = "--flood-inflight " + strconv.Itoa(n)
		}
		if cfg.floodRatio != 0 {
			r.edgeArgs = append(r.edgeArgs, "--flood-ratio", strconv.FormatFloat(cfg.floodRatio, 'f', -1, 64))
			label += " --flood-ratio " + strconv.FormatFloat(cfg.floodRatio, 'f', -1, 64)
		}
		if _, _, _, err := r.replaceEdge(ctx); err != nil {
			return err
		}
		if err := waitServing(ctx, p.target, p.conn, cfg.startTimeout); err != nil {
			return err
		}
		if err := floodPath(ctx, r, res, p, "flood, "+label); err != nil {
			return err
		}
	}
	for _, fp := range r.available(kindDirect) {
		if err := floodPath(ctx, r, res, fp, "flood"); err != nil {
			return err
		}
	}
	return nil
}

// floodPath runs the flood scenario on p, its figures under scenario.
func floodPath(ctx context.Context, r *rig, res *Results, p *path, scenario string) error {
	figFlood := func(m string) figName { return figName{scenario, m} }
	cfg := r.cfg
	rounds := max(cfg.floodRounds, 1)
	seg := cfg.floodDuration / time.Duration(rounds)
	var alone, flooded pacedRun
	var floodSent, floodRefused int64
	var floodTime time.Duration
	held, opened := 0, 0
	pids := map[string]int{"client": os.Getpid(), "origin": r.origin.pid()}
	if p.kind == kindAdit {
		pids["edge"], pids["connector"] = r.edge.pid(), p.conn.pid()
	}
	var cpuAlone, cpuFlooded cpuShare
	for range rounds {
		c0 := takeCPU(pids)
		alone.add(paced(ctx, p.target, "127.0.0.2", cfg.floodRate, seg))
		cpuAlone.add(c0, takeCPU(pids))
		f, err := startFlooderProc(ctx, p.target, cfg)
		if err != nil {
			return err
		}
		pids["flooder"] = f.pid()
		time.Sleep(time.Second) // the flood ramps up
		ok0, r0, err := f.count(ctx)
		if err != nil {
			f.kill()
			return err
		}
		t0, c0 := time.Now(), takeCPU(pids)
		flooded.add(paced(ctx, p.target, "127.0.0.2", cfg.floodRate, seg))
		c1 := takeCPU(pids)
		ok1, r1, err := f.count(ctx)
		if err != nil {
			f.kill()
			return err
		}
		cpuFlooded.add(c0, c1)
		floodSent += ok1 + r1 - ok0 - r0
		floodRefused += r1 - r0
		floodTime += time.Since(t0)
		h, o, err := f.finish(ctx)
		if err != nil {
			return err
		}
		delete(pids, "flooder")
		held += h
		opened += o
		time.Sleep(time.Second) // shed answers held by the edge end
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	floodRPS := float64(floodSent) / floodTime.Seconds()
	for why, n := range flooded.fails {
		r.cfg.logf("%s %s: flooded, the well-behaved client's failures: %d × %s", scenario, p.name, n, why)
	}
	p99base, p99flood := alone.p99(), flooded.p99()
	r.cfg.logf("%s %s: alone, %d requests at %d/s in %d rounds: %.2f%% answered 200, p99 %s; CPUs used: %s", scenario, p.name, alone.sent, cfg.floodRate, rounds, 100*alone.success(), p99base.Round(time.Microsecond), cpuAlone)
	r.cfg.logf("%s %s: flooded, %d requests at %d/s: %.2f%% answered 200, p99 %s; the flooder sent %.0f req/s (%.0f/s refused), %d of %d idle connections held open; CPUs used: %s",
		scenario, p.name, flooded.sent, cfg.floodRate, 100*flooded.success(), p99flood.Round(time.Microsecond), floodRPS, float64(floodRefused)/floodTime.Seconds(), held, opened, cpuFlooded)
	res.set(figFlood("well-behaved success alone"), "%", p.name, 100*alone.success())
	res.set(figFlood("well-behaved p99 alone"), "µs", p.name, us(p99base))
	res.set(figFlood("well-behaved success flooded"), "%", p.name, 100*flooded.success())
	res.set(figFlood("well-behaved p99 flooded"), "µs", p.name, us(p99flood))
	if p99base > 0 {
		res.set(figFlood("well-behaved p99 ratio flooded/alone"), "x", p.name, float64(p99flood)/float64(p99base))
	}
	res.set(figFlood("flooder req/s sent"), "req/s", p.name, floodRPS)
	res.set(figFlood("flooder req/s refused"), "req/s", p.name, float64(floodRefused)/floodTime.Seconds())
	res.set(figFlood("idle connections held"), "conns", p.name, float64(held)/float64(rounds))
	for _, side := range cpuFlooded.sides() {
		res.set(figFlood("CPUs used flooded: "+side), "CPUs", p.name, cpuFlooded.cpus(side))
	}
	return nil
}

// cpuSnap is the CPU time of each process by side, and of the whole
// machine ("machine": every process's, ours and others'), at one moment.
type cpuSnap struct {
	at  time.Time
	cpu map[string]time.Duration
}

func takeCPU(pids map[string]int) cpuSnap {
	s := cpuSnap{at: time.Now(), cpu: map[string]time.Duration{}}
	for side, pid := range pids {
		if d, err := procCPU(pid); err == nil {
			s.cpu[side] = d
		}
	}
	if d, err := machineBusy(); err == nil {
		s.cpu["machine"] = d
	}
	return s
}

// cpuShare sums the CPU time each side used over windows, and the
// windows' length.
type cpuShare struct {
	wall time.Duration
	used map[string]time.Duration
}

func (c *cpuShare) add(a, b cpuSnap) {
	if c.used == nil {
		c.used = map[string]time.Duration{}
	}
	c.wall += b.at.Sub(a.at)
	for side, d := range b.cpu {
		if d0, ok := a.cpu[side]; ok {
			c.used[side] += d - d0
		}
	}
}

// sides are the sides measured, the machine's last, then "others": the
// machine's busy time not spent by the sides (the other processes on it).
func (c *cpuShare) sides() []string {
	var s []string
	for side := range c.used {
		if side != "machine" {
			s = append(s, side)
		}
	}
	slices.Sort(s)
	if _, ok := c.used["machine"]; ok {
		s = append(s, "others", "machine")
	}
	return s
}

// cpus is how many CPUs side kept busy on average.
func (c *cpuShare) cpus(side string) float64 {
	if c.wall <= 0 {
		return 0
	}
	d := c.used[side]
	if side == "others" {
		d = c.used["machine"]
		for s, u := range c.used {
			if s != "machine" {
				d -= u
			}
		}
	}
	return d.Seconds() / c.wall.Seconds()
}

func (c cpuShare) String() string {
	var b strings.Builder
	for i, side := range c.sides() {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.2f", side, c.cpus(side))
	}
	return b.String()
}

// machineBusy is the CPU time every process on the machine has used
// (the non-idle times of /proc/stat's cpu line).
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseMachineBusy(string(b))
}

// maxTicks is the most USER_HZ ticks a time.Duration holds.
const maxTicks = math.MaxInt64 / int64(time.Second/clockTicks)

// parseMachineBusy reads /proc/stat's first line, "cpu user nice system
// idle iowait irq softirq steal ...", in USER_HZ ticks, and returns
// user+nice+system+irq+softirq+steal.
func parseMachineBusy(stat string) (time.Duration, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("bench: /proc/stat: odd first line %q", line)
	}
	var ticks int64
	for i, v := range f[1:9] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("bench: /proc/stat: %q is not a tick count", v)
		}
		if i != 3 && i != 4 { // idle, iowait
			ticks += n
		}
		if n > maxTicks || ticks > maxTicks {
			return 0, fmt.Errorf("bench: /proc/stat: %q: more ticks than a time.Duration holds", line)
		}
	}
	return time.Duration(ticks) * (time.Second / clockTicks), nil
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
