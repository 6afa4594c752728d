package e2e

// Connectors on a fleet of edges (issue 15): `adit edge` processes, each on
// its own 127.0.0.x, sharing an etcd run by the test; `adit tunnel run`
// replicas whose connections spread over them; and steady load entering at
// every edge through a load balancer that polls each edge's /ready.

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/adit-dev/adit/internal/metrics"
	"github.com/adit-dev/adit/internal/pki"
	"github.com/adit-dev/adit/internal/store"
)

// spreadFleet is an etcd and the edges that share it.
type spreadFleet struct {
	t      *testing.T
	etcd   string
	caPEM  []byte
	caKey  []byte
	edges  []*spreadEdge
	extras []string // flags for every edge
}

// spreadEdge is one `adit edge` of the fleet; it restarts on the
// addresses it bound first.
type spreadEdge struct {
	*proc
	name, ip, dataDir    string
	httpAddr, tunnelAddr string
	apiURL               string
	etcd                 string   // its etcd endpoints; if empty, the fleet's
	extras               []string // flags for this edge alone
	dnsAddr              string   // with --dns-addr in extras
	metricsAddr          atomic.Pointer[string]
	login                []string
}

func newSpreadFleet(t *testing.T, n int, extra ...string) *spreadFleet {
	t.Helper()
	return newSpreadFleetWith(t, n, nil, extra...)
}

// newSpreadFleetWith is newSpreadFleet with setup called on each edge
// before it starts (to set its etcd or its own flags).
func newSpreadFleetWith(t *testing.T, n int, setup func(f *spreadFleet, e *spreadEdge), extra ...string) *spreadFleet {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &spreadFleet{t: t, etcd: strings.Join(st.Endpoints(), ","), extras: extra}
	// One CA for the fleet: every edge's certificate is issued by it, so
	// a connector that trusts it (its credentials) verifies them all.
	f.caPEM, f.caKey, err = pki.NewCA("adit fleet CA")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		e := &spreadEdge{name: fmt.Sprintf("edge-%d", i+1), ip: fmt.Sprintf("127.0.0.%d", i+2), dataDir: t.TempDir()}
		tlsDir := filepath.Join(e.dataDir, "tls")
		if err := os.MkdirAll(tlsDir, 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(tlsDir, pki.CACertFile), f.caPEM, 0o644)
		os.WriteFile(filepath.Join(tlsDir, pki.CAKeyFile), f.caKey, 0o600)
		e.httpAddr, e.tunnelAddr = e.ip+":0", e.ip+":0"
		if setup != nil {
			setup(f, e)
		}
		f.edges = append(f.edges, e)
		f.start(e)
	}
	return f
}

// start starts (or restarts) e and waits until it serves.
func (f *spreadFleet) start(e *spreadEdge) {
	t := f.t
	t.Helper()
	args := append([]string{"edge", "--data-dir", e.dataDir, "--node-name", e.name,
		"--http-addr", e.httpAddr, "--tunnel-addr", e.tunnelAddr,
		"--api-addr", e.ip + ":0", "--metrics", e.ip + ":0", "--public-name", e.ip,
		"--etcd-endpoints", cmp.Or(e.etcd, f.etcd), "--lease-ttl", "3s", "--drain-delay", "2s"}, f.extras...)
	p := startAdit(t, nil, append(args, e.extras...)...)
	e.proc = p
	e.httpAddr = p.waitMatch(t, reHTTPAddr)[1]
	e.tunnelAddr = p.waitMatch(t, reTunnelAddr)[1]
	e.apiURL = p.waitMatch(t, reAPIURL)[1]
	if slices.Contains(e.extras, "--dns-addr") {
		e.dnsAddr = p.waitMatch(t, reDNSAddr)[1]
	}
	m := p.waitMatch(t, reEdgeMetrics)[1]
	e.metricsAddr.Store(&m)
	e.login = nil
	for _, fl := range strings.Fields(p.waitMatch(t, reLogin)[1]) {
		e.login = append(e.login, strings.Trim(fl, `"`))
	}
}

// ready is the edge's /ready: 200 and its registered connections.
func (e *spreadEdge) ready(timeout time.Duration) (metrics.Readiness, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return metrics.Check(ctx, *e.metricsAddr.Load())
}

func (e *spreadEdge) connections() int {
	rd, err := e.ready(2 * time.Second)
	if err != nil {
		return -1
	}
	return rd.ReadyConnections
}

// waitSpread waits until the edges hold total connections, and each of
// those in on holds at least min.
func (f *spreadFleet) waitSpread(total, min int, on ...int) {
	f.t.Helper()
	waitFor(f.t, fmt.Sprintf("%d connections, at least %d on each of edges %v", total, min, on), func() bool {
		sum := 0
		for _, i := range on {
			n := f.edges[i].connections()
			if n < min {
				return false
			}
			sum += n
		}
		return sum == total
	})
}

// startFleetReplica runs a connector from the tunnel's credentials alone
// (their edge list, and the lists the edges send).
func startFleetReplica(t testing.TB, tun relTunnel, origin string, haConns int, extra ...string) *replica {
	t.Helper()
	args := append([]string{"tunnel", "run", "--credentials-file", tun.credFile, "--url", origin,
		"--ha-connections", strconv.Itoa(haConns), "--grace-period", "10s", "--metrics", "127.0.0.1:0"}, extra...)
	p := startAdit(t, tun.env, args...)
	r := &replica{proc: p}
	r.metricsAddr = p.waitMatch(t, reConnectorMetrics)[1]
	p.waitMatch(t, reRegistered)
	return r
}

// lbEdge is the load balancer's view of one edge.
type lbEdge struct {
	usable atomic.Bool
	mu     sync.Mutex
	downs  []time.Time // when the balancer saw it go out of use
}

// fleetLoad is visitors entering at every edge through a load balancer:
// each visitor has a home edge and goes elsewhere only while the balancer
// finds its home out of use (its /ready not 200 within 300ms, or no
// registered connection: without forwarding between edges, an edge
// serves a tunnel only through its own connections).
type fleetLoad struct {
	f       *spreadFleet
	host    string
	lb      []*lbEdge
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	results []fleetResult
	n       atomic.Int64
}

type fleetResult struct {
	result
	edge int // the edge it was sent to
}

func startFleetLoad(t *testing.T, f *spreadFleet, host string, perEdge int) *fleetLoad {
	l := &fleetLoad{f: f, host: host, stop: make(chan struct{})}
	for range f.edges {
		l.lb = append(l.lb, &lbEdge{})
	}
	l.poll()
	for i := range l.lb {
		if !l.lb[i].usable.Load() {
			t.Fatalf("edge %d is not usable when the load starts", i+1)
		}
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			select {
			case <-l.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			l.poll()
		}
	}()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}
	body := bytes.Repeat([]byte("x"), 2048)
	for home := range f.edges {
		for w := range perEdge {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				for i := 0; ; i++ {
					select {
					case <-l.stop:
						return
					default:
					}
					target := l.pick(home)
					if target < 0 {
						time.Sleep(20 * time.Millisecond) // the load's pacing: no edge is ready, do not spin
						continue
					}
					method := http.MethodGet
					var rd io.Reader
					if (i+w)%2 == 1 {
						method, rd = http.MethodPost, bytes.NewReader(body)
					}
					req, _ := http.NewRequest(method, fmt.Sprintf("http://%s/?w=%d&i=%d&ms=%d", f.edges[target].httpAddr, w, i, (i*7919+w)%30), rd)
					req.Host = host
					r := fleetResult{result: result{start: time.Now(), method: method}, edge: target}
					resp, err := client.Do(req)
					if err != nil {
						r.err = err.Error()
					} else {
						b, err := io.ReadAll(resp.Body)
						resp.Body.Close()
						r.status = resp.StatusCode
						want := "ok"
						if method == http.MethodPost {
							want = "got 2048"
						}
						if err != nil {
							r.err = "reading body: " + err.Error()
						} else if r.status == http.StatusOK && string(b) != want {
							r.err = fmt.Sprintf("body %q, want %q", b, want)
						} else if r.status != http.StatusOK {
							r.err = strings.TrimSpace(string(b))
						}
					}
					r.end = time.Now()
					l.mu.Lock()
					l.results = append(l.results, r)
					l.mu.Unlock()
					l.n.Add(1)
					if !r.ok() {
						time.Sleep(20 * time.Millisecond) // the load's pacing: a failing edge is not hammered
					}
				}
			}()
		}
	}
	t.Cleanup(func() { l.finish() })
	return l
}

// poll asks every edge's /ready, as a load balancer's health check does.
func (l *fleetLoad) poll() {
	var wg sync.WaitGroup
	for i, e := range l.f.edges {
		wg.Go(func() {
			rd, err := e.ready(300 * time.Millisecond)
			ok := err == nil && rd.ReadyConnections > 0
			lb := l.lb[i]
			if lb.usable.Swap(ok) && !ok {
				lb.mu.Lock()
				lb.downs = append(lb.downs, time.Now())
				lb.mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// pick is the edge a visitor of home sends to: home if usable, else the
// next usable one; -1 if none.
func (l *fleetLoad) pick(home int) int {
	for k := range l.lb {
		i := (home + k) % len(l.lb)
		if l.lb[i].usable.Load() {
			return i
		}
	}
	return -1
}

// waitUsable waits until the balancer sends visitors to edge i again.
func (l *fleetLoad) waitUsable(t testing.TB, i int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("edge %d back in the load balancer", i+1), func() bool { return l.lb[i].usable.Load() })
}

// detected waits until the balancer has taken edge i out of use after
// from, and returns when it did.
func (l *fleetLoad) detected(t testing.TB, i int, from time.Time) time.Time {
	t.Helper()
	var at time.Time
	waitFor(t, fmt.Sprintf("the load balancer to notice edge %d is down", i+1), func() bool {
		l.lb[i].mu.Lock()
		defer l.lb[i].mu.Unlock()
		for _, d := range l.lb[i].downs {
			if !d.Before(from) {
				at = d
				return true
			}
		}
		return false
	})
	return at
}

func (l *fleetLoad) waitRequests(t testing.TB, n int64) {
	t.Helper()
	target := l.n.Load() + n
	waitFor(t, fmt.Sprintf("%d more requests", n), func() bool { return l.n.Load() >= target })
}

func (l *fleetLoad) finish() []fleetResult {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]fleetResult(nil), l.results...)
}

// edgeWindow is a span in which requests sent to one edge may fail: from
// the failure injected to when the balancer noticed it.
type edgeWindow struct {
	window
	edge int
}

// checkFleetLoad fails the test for every failed request no window
// allows, and logs the counts.
func checkFleetLoad(t *testing.T, rs []fleetResult, windows []edgeWindow) {
	t.Helper()
	var unexpected, allowed int
	perEdge := map[int]int{}
	for _, r := range rs {
		perEdge[r.edge+1]++
		if r.ok() {
			continue
		}
		covered := false
		for _, w := range windows {
			if w.edge == r.edge && w.covers(r.result) {
				covered = true
				break
			}
		}
		if covered {
			allowed++
			continue
		}
		unexpected++
		if unexpected <= 10 {
			t.Errorf("failed at edge %d outside any allowed window: %s", r.edge+1, r.result)
		}
		if took := r.end.Sub(r.start); took > 10*time.Second {
			t.Errorf("a request hung for %v: %s", took, r.result)
		}
	}
	t.Logf("%d requests (by edge %v), %d failed where allowed, %d failed elsewhere", len(rs), perEdge, allowed, unexpected)
}

// TestFleetChaos: three edges on one etcd, two connector replicas of 4
// connections spread over them, load entering at every edge. One edge is
// killed (SIGKILL), another stopped (SIGSTOP) and resumed, the killed one
// started again. A request may fail only if it was sent to the edge hit
// and started before the load balancer noticed; the connectors keep the
// tunnel up through the others, and spread back when the edges return.
func TestFleetChaos(t *testing.T) {
	start := time.Now()
	f := newSpreadFleet(t, 3)
	tun := createRelTunnel(t, &relEdge{proc: f.edges[0].proc, login: f.edges[0].login}, "fleet", "fleet.test")
	origin := relOrigin(t)
	startFleetReplica(t, tun, origin, 4)
	startFleetReplica(t, tun, origin, 4)
	f.waitSpread(8, 2, 0, 1, 2)
	l := startFleetLoad(t, f, tun.host, 3)
	var windows []edgeWindow
	l.waitRequests(t, 100)

	// SIGKILL edge 2: its connections move to edges 1 and 3.
	from := time.Now()
	f.edges[1].signal(t, syscall.SIGKILL)
	seen := l.detected(t, 1, from)
	windows = append(windows, edgeWindow{window{"SIGKILL edge 2", from, seen, true}, 1})
	f.waitSpread(8, 2, 0, 2)
	l.waitRequests(t, 100)

	// SIGSTOP edge 3: the connectors find its connections dead and move
	// them to edge 1; resumed, it takes connections again.
	from = time.Now()
	f.edges[2].signal(t, syscall.SIGSTOP)
	seen = l.detected(t, 2, from)
	windows = append(windows, edgeWindow{window{"SIGSTOP edge 3", from, seen, true}, 2})
	f.waitSpread(8, 8, 0)
	l.waitRequests(t, 100)
	f.edges[2].signal(t, syscall.SIGCONT)
	l.waitUsable(t, 2)

	// Edge 2 starts again: the connectors spread over it again.
	f.start(f.edges[1])
	l.waitUsable(t, 1)
	l.waitRequests(t, 200)
	rs := l.finish()
	checkFleetLoad(t, rs, windows)
	t.Logf("fleet chaos took %v", time.Since(start).Round(time.Millisecond))
}

// TestFleetRollingRestart: every edge of three is drained and started
// again in turn, under load entering at every edge: the first with `adit
// edge drain` through another edge's API, the others with SIGTERM. No
// request may fail.
func TestFleetRollingRestart(t *testing.T) {
	start := time.Now()
	f := newSpreadFleet(t, 3)
	tun := createRelTunnel(t, &relEdge{proc: f.edges[0].proc, login: f.edges[0].login}, "rolling", "rolling.test")
	origin := relOrigin(t)
	startFleetReplica(t, tun, origin, 4)
	startFleetReplica(t, tun, origin, 4)
	f.waitSpread(8, 2, 0, 1, 2)
	l := startFleetLoad(t, f, tun.host, 2)
	t.Logf("load started after %v", time.Since(start).Round(time.Millisecond))
	l.waitRequests(t, 100)
	other := []string{"ADIT_HOME=" + t.TempDir()}
	mustAdit(t, other, f.edges[1].login...) // drain edge 1 through edge 2's API
	for i, e := range f.edges {
		if i == 0 {
			out := mustAdit(t, other, "edge", "drain", e.name)
			if !strings.Contains(out, e.name+" is draining") {
				t.Errorf("adit edge drain: %q", out)
			}
		} else {
			e.signal(t, syscall.SIGTERM)
		}
		if code := e.wait(t, 30*time.Second); code != 0 {
			t.Errorf("edge %d exited %d after draining", i+1, code)
		}
		if !strings.Contains(e.out.String(), "drained") {
			t.Errorf("edge %d did not log that it drained", i+1)
		}
		t.Logf("edge %d drained and exited after %v", i+1, time.Since(start).Round(time.Millisecond))
		f.start(e)
		t.Logf("edge %d started again after %v", i+1, time.Since(start).Round(time.Millisecond))
		l.waitUsable(t, i)
		t.Logf("edge %d takes visitors again after %v", i+1, time.Since(start).Round(time.Millisecond))
		l.waitRequests(t, 100)
	}
	rs := l.finish()
	checkFleetLoad(t, rs, nil)
	t.Logf("rolling restart of 3 edges took %v", time.Since(start).Round(time.Millisecond))
}
