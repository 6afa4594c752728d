package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
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
//     times. The edge is restarted first with --flood-inflight N, the cap on
//     requests in flight past which the heaviest senders are shed.

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

// paced sends rate GETs per second from ip for d and returns the share
// answered 200 and the p99 of those (from when each was due).
func paced(ctx context.Context, t target, ip string, rate int, d time.Duration) (success float64, p99 time.Duration, n int, fails map[string]int) {
	c := clientFrom(ip, 64)
	defer c.CloseIdleConnections()
	var (
		mu   sync.Mutex
		lat  []time.Duration
		ok   int
		sent int
		wg   sync.WaitGroup
	)
	fails = map[string]int{}
	fail := func(why string) {
		mu.Lock()
		fails[why]++
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
		sent++
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
			}
			if resp.StatusCode == http.StatusOK {
				mu.Lock()
				ok++
				lat = append(lat, time.Since(due))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if sent == 0 || len(lat) == 0 {
		return 0, 0, sent, fails
	}
	slices.Sort(lat)
	return float64(ok) / float64(sent), quantile(lat, 0.99), sent, fails
}

func runFlood(ctx context.Context, r *rig, res *Results) error {
	p := r.aditPath()
	if p == nil {
		return nil
	}
	cfg := r.cfg
	// An edge with the flood cap of the scenario.
	r.edgeArgs = []string{"--flood-inflight", strconv.Itoa(cfg.floodInflight)}
	if _, _, _, err := r.replaceEdge(ctx); err != nil {
		return err
	}
	if err := waitServing(ctx, p.target, p.conn, cfg.startTimeout); err != nil {
		return err
	}
	succ0, p99base, n0, _ := paced(ctx, p.target, "127.0.0.2", cfg.floodRate, cfg.floodDuration)
	r.cfg.logf("flood %s: alone, %d requests at %d/s: %.2f%% answered 200, p99 %s", p.name, n0, cfg.floodRate, 100*succ0, p99base.Round(time.Microsecond))

	fctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var floodOK, floodRefused, idleHeld atomic.Int64
	fc := clientFrom("127.0.0.3", cfg.floodWorkers)
	for range cfg.floodWorkers {
		wg.Go(func() {
			for fctx.Err() == nil {
				req, err := p.target.request(fctx, "GET", "/1k", nil)
				if err != nil {
					return
				}
				resp, err := fc.Do(req)
				if err != nil {
					floodRefused.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					floodOK.Add(1)
				} else {
					floodRefused.Add(1)
				}
			}
		})
	}
	var idle []net.Conn
	var idleMu sync.Mutex
	wg.Go(func() {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 4)}, Timeout: time.Second}
		addr := p.target.base[len("http://"):]
		for i := 0; i < cfg.floodIdle && fctx.Err() == nil; i++ {
			c, err := d.DialContext(fctx, "tcp", addr)
			if err != nil {
				continue
			}
			idleMu.Lock()
			idle = append(idle, c)
			idleMu.Unlock()
			idleHeld.Add(1)
		}
	})
	time.Sleep(time.Second) // the flood ramps up
	f0 := floodOK.Load() + floodRefused.Load()
	t0 := time.Now()
	succ1, p99flood, n1, fails := paced(ctx, p.target, "127.0.0.2", cfg.floodRate, cfg.floodDuration)
	floodRPS := float64(floodOK.Load()+floodRefused.Load()-f0) / time.Since(t0).Seconds()
	cancel()
	wg.Wait()
	fc.CloseIdleConnections()
	// The edge closed the idle connections it refused: count those still open.
	held := 0
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && isTimeout(err) {
			held++
		}
		c.Close()
	}
	for why, n := range fails {
		r.cfg.logf("flood %s: flooded, the well-behaved client's failures: %d × %s", p.name, n, why)
	}
	r.cfg.logf("flood %s: flooded, %d requests at %d/s: %.2f%% answered 200, p99 %s; the flooder sent %.0f req/s (%d refused), %d of %d idle connections held open",
		p.name, n1, cfg.floodRate, 100*succ1, p99flood.Round(time.Microsecond), floodRPS, floodRefused.Load(), held, idleHeld.Load())
	res.set(figFlood("well-behaved success alone"), "%", p.name, 100*succ0)
	res.set(figFlood("well-behaved p99 alone"), "µs", p.name, us(p99base))
	res.set(figFlood("well-behaved success flooded"), "%", p.name, 100*succ1)
	res.set(figFlood("well-behaved p99 flooded"), "µs", p.name, us(p99flood))
	if p99base > 0 {
		res.set(figFlood("well-behaved p99 ratio flooded/alone"), "x", p.name, float64(p99flood)/float64(p99base))
	}
	res.set(figFlood("flooder req/s sent"), "req/s", p.name, floodRPS)
	res.set(figFlood("idle connections held"), "conns", p.name, float64(held))
	return nil
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
