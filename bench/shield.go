package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
//     load then weighs on both alike). The edge is restarted first with
//     --flood-inflight N, the cap on requests in flight past which the
//     heaviest senders are shed, and --flood-ratio.

var (
	figWAF   = func(m string) figName { return figName{"WAF GET 1KiB c=50", m} }
	figFlood = func(m string) figName { return figName{"flood", m} }
)

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

// flooder is one round's attack: workers sending as fast as they can from
// one address, and idle connections opened from another.
type flooder struct {
	cancel           context.CancelFunc
	wg               sync.WaitGroup
	client           *http.Client
	ok, refused      atomic.Int64
	idleMu           sync.Mutex
	idle             []net.Conn
	idleOpened, held int
}

func startFlooder(ctx context.Context, t target, cfg *config) *flooder {
	fctx, cancel := context.WithCancel(ctx)
	f := &flooder{cancel: cancel, client: clientFrom("127.0.0.3", cfg.floodWorkers)}
	for range cfg.floodWorkers {
		f.wg.Go(func() {
			for fctx.Err() == nil {
				req, err := t.request(fctx, "GET", "/1k", nil)
				if err != nil {
					return
				}
				resp, err := f.client.Do(req)
				if err != nil {
					f.refused.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					f.ok.Add(1)
				} else {
					f.refused.Add(1)
				}
			}
		})
	}
	f.wg.Go(func() {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 4)}, Timeout: time.Second}
		addr := strings.TrimPrefix(t.base, "http://")
		for i := 0; i < cfg.floodIdle && fctx.Err() == nil; i++ {
			c, err := d.DialContext(fctx, "tcp", addr)
			if err != nil {
				continue
			}
			f.idleMu.Lock()
			f.idle = append(f.idle, c)
			f.idleMu.Unlock()
		}
	})
	return f
}

func (f *flooder) sent() int64 { return f.ok.Load() + f.refused.Load() }

// stop ends the attack and counts the idle connections the edge still
// held open (it closes those it refused).
func (f *flooder) stop() {
	f.cancel()
	f.wg.Wait()
	f.client.CloseIdleConnections()
	for _, c := range f.idle {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && isTimeout(err) {
			f.held++
		}
		c.Close()
	}
	f.idleOpened = len(f.idle)
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
	// An edge with the flood cap of the scenario.
	r.edgeArgs = []string{"--flood-inflight", strconv.Itoa(cfg.floodInflight)}
	if cfg.floodRatio != 0 {
		r.edgeArgs = append(r.edgeArgs, "--flood-ratio", strconv.FormatFloat(cfg.floodRatio, 'f', -1, 64))
	}
	if _, _, _, err := r.replaceEdge(ctx); err != nil {
		return err
	}
	if err := waitServing(ctx, p.target, p.conn, cfg.startTimeout); err != nil {
		return err
	}
	for _, fp := range append([]*path{p}, r.available(kindDirect)...) {
		if err := floodPath(ctx, r, res, fp); err != nil {
			return err
		}
	}
	return nil
}

func floodPath(ctx context.Context, r *rig, res *Results, p *path) error {
	cfg := r.cfg
	rounds := max(cfg.floodRounds, 1)
	seg := cfg.floodDuration / time.Duration(rounds)
	var alone, flooded pacedRun
	var floodSent, floodRefused int64
	var floodTime time.Duration
	held, opened := 0, 0
	for range rounds {
		alone.add(paced(ctx, p.target, "127.0.0.2", cfg.floodRate, seg))
		f := startFlooder(ctx, p.target, cfg)
		time.Sleep(time.Second) // the flood ramps up
		f0, r0, t0 := f.sent(), f.refused.Load(), time.Now()
		flooded.add(paced(ctx, p.target, "127.0.0.2", cfg.floodRate, seg))
		floodSent += f.sent() - f0
		floodRefused += f.refused.Load() - r0
		floodTime += time.Since(t0)
		f.stop()
		held += f.held
		opened += f.idleOpened
		time.Sleep(time.Second) // shed answers held by the edge end
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	floodRPS := float64(floodSent) / floodTime.Seconds()
	for why, n := range flooded.fails {
		r.cfg.logf("flood %s: flooded, the well-behaved client's failures: %d × %s", p.name, n, why)
	}
	p99base, p99flood := alone.p99(), flooded.p99()
	r.cfg.logf("flood %s: alone, %d requests at %d/s in %d rounds: %.2f%% answered 200, p99 %s", p.name, alone.sent, cfg.floodRate, rounds, 100*alone.success(), p99base.Round(time.Microsecond))
	r.cfg.logf("flood %s: flooded, %d requests at %d/s: %.2f%% answered 200, p99 %s; the flooder sent %.0f req/s (%.0f/s refused), %d of %d idle connections held open",
		p.name, flooded.sent, cfg.floodRate, 100*flooded.success(), p99flood.Round(time.Microsecond), floodRPS, float64(floodRefused)/floodTime.Seconds(), held, opened)
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
	return nil
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
