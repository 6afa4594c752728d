package e2e

// Harness for the reliability tests (reliability_test.go, chaos_test.go):
// an `adit edge` process that can be restarted on the same addresses,
// `adit tunnel run` replicas, a steady load generator that records every
// request, and a Prometheus scraper.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	reEdgeMetrics      = regexp.MustCompile(`metrics\s+http://(\S+)/metrics`)
	reConnectorMetrics = regexp.MustCompile(`msg="metrics listening" component=connector .*addr=(\S+)`)
	reRegistered       = regexp.MustCompile(`connection registered`)
	reTunnelAddr       = regexp.MustCompile(`tunnels\s+(\S+) \(udp`)
)

// relEdge is an `adit edge` process on fixed addresses, so that it can be
// restarted (or killed and started again) under the same ones.
type relEdge struct {
	*proc
	dataDir, httpAddr, tunnelAddr string
	apiURL, metricsAddr           string
	login                         []string
}

func startRelEdge(t testing.TB, dataDir, httpAddr, tunnelAddr string, extra ...string) *relEdge {
	t.Helper()
	args := append([]string{"edge", "--data-dir", dataDir, "--http-addr", httpAddr, "--tunnel-addr", tunnelAddr,
		"--api-addr", "127.0.0.1:0", "--metrics", "127.0.0.1:0"}, extra...)
	p := startAdit(t, nil, args...)
	e := &relEdge{proc: p, dataDir: dataDir}
	e.httpAddr = p.waitMatch(t, reHTTPAddr)[1]
	e.tunnelAddr = p.waitMatch(t, reTunnelAddr)[1]
	e.apiURL = p.waitMatch(t, reAPIURL)[1]
	e.metricsAddr = p.waitMatch(t, reEdgeMetrics)[1]
	for _, f := range strings.Fields(p.waitMatch(t, reLogin)[1]) {
		e.login = append(e.login, strings.Trim(f, `"`))
	}
	return e
}

// relTunnel is a tunnel created through the CLI on a relEdge, routed to
// host, with its credentials file.
type relTunnel struct {
	env      []string
	id       string
	credFile string
	host     string
}

func createRelTunnel(t testing.TB, e *relEdge, name, host string) relTunnel {
	t.Helper()
	home := t.TempDir()
	env := []string{"ADIT_HOME=" + home}
	mustAdit(t, env, e.login...)
	m := reCreated.FindStringSubmatch(mustAdit(t, env, "tunnel", "create", name))
	if m == nil {
		t.Fatal("tunnel create printed no id")
	}
	mustAdit(t, env, "tunnel", "route", "dns", name, host)
	return relTunnel{env: env, id: m[2], credFile: filepath.Join(home, m[2]+".json"), host: host}
}

// replica is an `adit tunnel run` process.
type replica struct {
	*proc
	metricsAddr string
}

// startReplica runs a connector for tun to origin with haConns connections
// and waits until one is registered.
func startReplica(t testing.TB, e *relEdge, tun relTunnel, origin string, haConns int, extra ...string) *replica {
	t.Helper()
	args := append([]string{"tunnel", "run", "--credentials-file", tun.credFile, "--url", origin,
		"--edge", e.tunnelAddr, "--edge-server-name", "localhost",
		"--ha-connections", strconv.Itoa(haConns), "--grace-period", "10s", "--metrics", "127.0.0.1:0"}, extra...)
	p := startAdit(t, tun.env, args...)
	r := &replica{proc: p}
	r.metricsAddr = p.waitMatch(t, reConnectorMetrics)[1]
	p.waitMatch(t, reRegistered)
	return r
}

// signal sends sig to the process.
func (p *proc) signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// scrape reads a Prometheus text exposition into "name{labels}" → value.
func scrape(addr string) (map[string]float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", addr, resp.Status)
	}
	m := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// metricValue scrapes addr and returns one series, or -1 if unreachable.
func metricValue(addr, series string) float64 {
	m, err := scrape(addr)
	if err != nil {
		return -1
	}
	return m[series]
}

// relOrigin is the origin of the reliability tests: GET answers "ok",
// POST echoes the body's length; ?ms=N delays the answer by N ms.
func relOrigin(t testing.TB) string {
	t.Helper()
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if ms, err := strconv.Atoi(r.URL.Query().Get("ms")); err == nil && ms > 0 {
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		if r.Method == http.MethodPost {
			fmt.Fprintf(w, "got %d", n)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(o.Close)
	return o.URL
}

// result is one request of the load generator.
type result struct {
	start, end time.Time
	method     string
	status     int // 0 for a transport error
	err        string
}

func (r result) ok() bool { return r.status == http.StatusOK && r.err == "" }

func (r result) String() string {
	return fmt.Sprintf("%s started %s, took %v: status %d %s", r.method, r.start.Format("15:04:05.000"), r.end.Sub(r.start).Round(time.Millisecond), r.status, r.err)
}

// load sends a steady stream of GET and POST requests through the edge
// and records every one.
type load struct {
	addr    string
	host    string
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	results []result
	n       atomic.Int64
}

// startLoad starts workers goroutines; each alternates GET and POST (a
// 2 KiB body), asking the origin to take up to maxMS milliseconds.
func startLoad(t testing.TB, addr, host string, workers, maxMS int) *load {
	l := &load{addr: addr, host: host, stop: make(chan struct{})}
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: workers, DisableCompression: true},
	}
	body := bytes.Repeat([]byte("x"), 2048)
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				method := http.MethodGet
				var rd io.Reader
				if (i+w)%2 == 1 {
					method, rd = http.MethodPost, bytes.NewReader(body)
				}
				ms := 0
				if maxMS > 0 {
					ms = (i*7919 + w*104729) % (maxMS + 1)
				}
				req, _ := http.NewRequest(method, fmt.Sprintf("http://%s/?w=%d&i=%d&ms=%d", l.addr, w, i, ms), rd)
				req.Host = l.host
				r := result{start: time.Now(), method: method}
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
					}
				}
				r.end = time.Now()
				l.mu.Lock()
				l.results = append(l.results, r)
				l.mu.Unlock()
				l.n.Add(1)
				if !r.ok() {
					// The edge may be down: do not spin.
					select {
					case <-l.stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		}()
	}
	t.Cleanup(func() { l.finish() })
	return l
}

// waitRequests waits until n more requests have completed.
func (l *load) waitRequests(t testing.TB, n int64) {
	t.Helper()
	target := l.n.Load() + n
	waitFor(t, fmt.Sprintf("%d more requests", n), func() bool { return l.n.Load() >= target })
}

// finish stops the workers and returns every result.
func (l *load) finish() []result {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]result(nil), l.results...)
}

// failures returns the results that are not a 200 with the right body.
func failures(rs []result) []result {
	var out []result
	for _, r := range rs {
		if !r.ok() {
			out = append(out, r)
		}
	}
	return out
}
