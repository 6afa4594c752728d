package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/adit-dev/adit/internal/metrics"
)

// waitConnections waits until the edge reports n registered tunnel
// connections.
func waitConnections(t testing.TB, e *relEdge, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("the edge to hold %d connections", n), func() bool {
		return metricValue(e.metricsAddr, "adit_edge_tunnel_connections") == float64(n)
	})
}

// TestRollingRestart restarts two replicas one after the other under
// steady load: SIGTERM one, wait for it to exit, start it again, wait
// until it is ready, then the other. No request may fail.
func TestRollingRestart(t *testing.T) {
	e := startRelEdge(t, t.TempDir(), "127.0.0.1:0", "127.0.0.1:0")
	tun := createRelTunnel(t, e, "rolling", "rolling.test")
	origin := relOrigin(t)
	replicas := []*replica{startReplica(t, e, tun, origin, 2), startReplica(t, e, tun, origin, 2)}
	waitConnections(t, e, 4)

	l := startLoad(t, e.httpAddr, tun.host, 6, 30)
	l.waitRequests(t, 100)
	for i, r := range replicas {
		start := time.Now()
		r.signal(t, syscall.SIGTERM)
		if code := r.wait(t, 20*time.Second); code != 0 {
			t.Errorf("replica %d: exit code %d after SIGTERM, want 0", i, code)
		}
		drained := time.Since(start)
		nr := startReplica(t, e, tun, origin, 2)
		waitConnections(t, e, 4)
		if out, code := runAdit(t, nil, "tunnel", "ready", "--metrics", nr.metricsAddr); code != 0 {
			t.Errorf("tunnel ready on the restarted replica: exit %d: %s", code, out)
		}
		t.Logf("replica %d drained and exited in %v; its successor is ready", i, drained.Round(time.Millisecond))
		l.waitRequests(t, 100)
	}
	rs := l.finish()
	fails := failures(rs)
	t.Logf("rolling restart: %d requests, %d failed", len(rs), len(fails))
	for i, f := range fails {
		if i == 10 {
			t.Errorf("... and %d more", len(fails)-10)
			break
		}
		t.Errorf("failed: %s", f)
	}
}

// TestKillReplicaUnderLoad kills one of two replicas with SIGKILL under
// load. Requests in flight on it may fail, but only with a 502 and never by
// hanging; once the edge has noticed (its health check, within a few
// seconds) every new request succeeds on the other replica.
func TestKillReplicaUnderLoad(t *testing.T) { forEachProtocol(t, testKillReplicaUnderLoad) }

func testKillReplicaUnderLoad(t *testing.T, proto string) {
	e := startRelEdge(t, t.TempDir(), "127.0.0.1:0", "127.0.0.1:0")
	tun := createRelTunnel(t, e, "kill", "kill.test")
	origin := relOrigin(t)
	victim := startReplica(t, e, tun, origin, 2, "--protocol", proto)
	startReplica(t, e, tun, origin, 2, "--protocol", proto)
	waitConnections(t, e, 4)

	// Requests take up to 300ms at the origin, so that several are in
	// flight on the victim when it dies.
	l := startLoad(t, e.httpAddr, tun.host, 8, 300)
	l.waitRequests(t, 100)
	killed := time.Now()
	victim.signal(t, syscall.SIGKILL)
	victim.wait(t, 10*time.Second)

	if proto == "quic" {
		// No packet will ever say so: the watchdog must notice the silence.
		e.waitMatch(t, regexp.MustCompile(`connection quiet`))
	}
	// Over TCP the kernel of the dead process resets its connections, so
	// the edge learns at once and closes them.
	noticed := time.Now()
	waitConnections(t, e, 2)
	closed := time.Now()
	if proto != "quic" {
		noticed = closed
	}
	l.waitRequests(t, 200)
	rs := l.finish()

	t.Logf("after SIGKILL: the edge routed around the replica after %v and closed its connections after %v",
		noticed.Sub(killed).Round(time.Millisecond), closed.Sub(killed).Round(time.Millisecond))
	var inFlight, after int
	for _, r := range rs {
		if r.ok() {
			continue
		}
		took := r.end.Sub(r.start)
		switch {
		case r.status != 502:
			t.Errorf("a failed request must be a 502: %s", r)
		case took > 10*time.Second:
			t.Errorf("a failed request hung: %s", r)
		case r.start.After(noticed):
			t.Errorf("a request started after the edge noticed the dead replica failed: %s", r)
		case r.start.Before(killed):
			inFlight++
		default:
			after++
		}
	}
	retries := metricValue(e.metricsAddr, "adit_edge_request_retries_total")
	t.Logf("%d requests: %d in flight at the kill failed with 502, %d started before the edge noticed failed with 502; %v requests were replayed on the other replica",
		len(rs), inFlight, after, retries)
}

// TestEdgeRestartReconnect restarts the edge (SIGTERM, then SIGKILL) under
// a running replica and measures how long after the edge is back the
// tunnel serves again. reconnect.go promises 2s; the assertion leaves
// room for a loaded machine.
func TestEdgeRestartReconnect(t *testing.T) {
	dataDir := t.TempDir()
	e := startRelEdge(t, dataDir, "127.0.0.1:0", "127.0.0.1:0") // restarts reuse the bound addresses
	tun := createRelTunnel(t, e, "restart", "restart.test")
	r := startReplica(t, e, tun, relOrigin(t), 4)
	waitFor(t, "the tunnel to serve", func() bool {
		code, _ := getVia(e.httpAddr, tun.host)
		return code == 200
	})

	for _, how := range []string{"SIGTERM", "SIGKILL"} {
		if how == "SIGTERM" {
			e.stop(t)
		} else {
			e.signal(t, syscall.SIGKILL)
			e.wait(t, 10*time.Second)
		}
		e = startRelEdge(t, dataDir, e.httpAddr, e.tunnelAddr)
		back := time.Now()
		waitFor(t, "the tunnel to serve after the edge restart", func() bool {
			code, _ := getVia(e.httpAddr, tun.host)
			return code == 200
		})
		took := time.Since(back)
		t.Logf("edge restarted after %s: the tunnel served again %v after the edge was back", how, took.Round(time.Millisecond))
		if took > 5*time.Second {
			t.Errorf("after %s: the tunnel served again only %v after the edge was back, want about 2s", how, took)
		}
		waitConnections(t, e, 4)
	}

	// The network goes away for longer than the idle timeout (the edge is
	// frozen): the connector's connections die and it probes until the
	// edge answers again.
	e.signal(t, syscall.SIGSTOP)
	waitFor(t, "the connector to lose its connections", func() bool {
		rd, _ := metrics.Check(context.Background(), r.metricsAddr)
		return rd.ReadyConnections == 0
	})
	e.signal(t, syscall.SIGCONT)
	back := time.Now()
	waitFor(t, "the tunnel to serve after the outage", func() bool {
		code, _ := getVia(e.httpAddr, tun.host)
		return code == 200
	})
	took := time.Since(back)
	t.Logf("after an outage longer than the idle timeout: the tunnel served again %v after the edge was reachable", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("after an outage: the tunnel served again only %v after the edge was reachable, want about 2s", took)
	}
}

// TestMetricsAndReady checks the operator endpoints of a real edge and
// connector, and `adit tunnel ready`.
func TestMetricsAndReady(t *testing.T) {
	e := startRelEdge(t, t.TempDir(), "127.0.0.1:0", "127.0.0.1:0")
	tun := createRelTunnel(t, e, "metrics", "metrics.test")
	r := startReplica(t, e, tun, relOrigin(t), 2)
	waitConnections(t, e, 2)
	for range 5 {
		if code, _ := getVia(e.httpAddr, tun.host); code != 200 {
			t.Fatalf("request through the tunnel: %d", code)
		}
	}
	getVia(e.httpAddr, "nobody.test")

	em, err := scrape(e.metricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := scrape(r.metricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name    string
		got     float64
		atLeast float64
	}{
		{"edge 200s", em[`adit_edge_requests_total{code="200"}`], 5},
		{"edge 404s", em[`adit_edge_requests_total{code="404"}`], 1},
		{"edge duration count", em[`adit_edge_request_duration_seconds_count`], 6},
		{"edge connections", em[`adit_edge_tunnel_connections`], 2},
		{"edge registrations", em[`adit_edge_registrations_total{result="ok"}`], 2},
		{"edge bytes out", em[`adit_edge_bytes_total{direction="to_connector"}`], 1},
		{"edge bytes in", em[`adit_edge_bytes_total{direction="from_connector"}`], 1},
		{"connector 200s", cm[`adit_connector_requests_total{code="200"}`], 5},
		{"connector connections", cm[`adit_connector_tunnel_connections`], 2},
		{"connector registrations", cm[`adit_connector_registrations_total{result="ok"}`], 2},
		{"connector bytes in", cm[`adit_connector_bytes_total{direction="from_edge"}`], 1},
		{"connector goroutines", cm[`go_goroutines`], 1},
	}
	for _, c := range checks {
		if c.got < c.atLeast {
			t.Errorf("%s: got %v, want at least %v", c.name, c.got, c.atLeast)
		}
	}
	if got := em[`adit_edge_streams_in_flight`]; got != 0 {
		t.Errorf("edge streams in flight when idle: got %v, want 0", got)
	}

	rd, err := metrics.Check(context.Background(), r.metricsAddr)
	if err != nil || rd.ReadyConnections != 2 || rd.ConnectorID == "" {
		t.Errorf("connector /ready: got %+v, %v; want 2 connections and an ID", rd, err)
	}
	if out, code := runAdit(t, nil, "tunnel", "ready", "--metrics", r.metricsAddr); code != 0 || !strings.Contains(out, "2 registered connections") {
		t.Errorf("tunnel ready: exit %d, %q; want 0 and the connection count", code, out)
	}
	if _, err := metrics.Check(context.Background(), e.metricsAddr); err != nil {
		t.Errorf("edge /ready: %v", err)
	}

	// A connector that cannot reach an edge is not ready.
	lonely := startAdit(t, tun.env, "tunnel", "run", "--credentials-file", tun.credFile, "--url", "http://127.0.0.1:1",
		"--edge", freeUDPAddr(t), "--metrics", "127.0.0.1:0")
	addr := lonely.waitMatch(t, reConnectorMetrics)[1]
	out, code := runAdit(t, nil, "tunnel", "ready", "--metrics", addr)
	if code != 1 || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "not ready") {
		t.Errorf("tunnel ready without a connection: exit %d, %q; want 1 and one line saying not ready", code, out)
	}
	lonely.stop(t)
	out, code = runAdit(t, nil, "tunnel", "ready", "--metrics", addr)
	if code != 1 || !strings.Contains(out, "refused") {
		t.Errorf("tunnel ready with nothing listening: exit %d, %q; want 1 and a reason", code, out)
	}
}

// TestEdgeGracefulClose: Close lets requests in flight finish, refuses new
// ones, does not wait on client connections that never sent a request,
// and tells connectors it is shutting down so they move on at once.
func TestEdgeGracefulClose(t *testing.T) {
	started := make(chan struct{}, 10)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		time.Sleep(300 * time.Millisecond) // a request in flight when Close starts
		io.WriteString(w, "finished")
	}))
	defer origin.Close()
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "graceful", "graceful.test")
	logs := &syncBuffer{}
	startConnector(t, srv, tun, mustIngress(t, origin.URL), withLogBuffer(logs))

	idle, err := net.Dial("tcp", srv.HTTPAddr().String()) // never sends a request
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	const n = 5
	results := make(chan string, n)
	for range n {
		go func() {
			code, body := getVia(srv.HTTPAddr().String(), "graceful.test")
			results <- fmt.Sprint(code, " ", body)
		}()
	}
	for range n {
		<-started
	}
	closed := make(chan struct{})
	go func() {
		srv.Close()
		close(closed)
	}()
	for range n {
		if got := <-results; got != "200 finished" {
			t.Errorf("request in flight during Close: got %q, want 200 finished", got)
		}
	}
	select {
	case <-closed:
	case <-time.After(4 * time.Second):
		t.Fatal("Close still waiting 4s after the requests finished")
	}
	if code, _ := getVia(srv.HTTPAddr().String(), "graceful.test"); code != -1 {
		t.Errorf("request after Close: got %d, want a refused connection", code)
	}
	waitFor(t, "the connector to hear that the edge shut down", func() bool {
		return strings.Contains(logs.String(), "edge shutting down")
	})
}

// TestMetricNames: the edge's and the connector's own metrics follow the
// Prometheus naming rules (promlint).
func TestMetricNames(t *testing.T) {
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "lint", "lint.test")
	c := startConnector(t, srv, tun, mustIngress(t, helloOrigin(t, "hi").URL))
	getVia(srv.HTTPAddr().String(), "lint.test")
	for name, g := range map[string]prometheus.Gatherer{"edge": srv.Metrics(), "connector": c.Metrics()} {
		mfs, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			if strings.HasPrefix(p.Metric, "adit_") {
				t.Errorf("%s metric %s: %s", name, p.Metric, p.Text)
			}
		}
	}
}

// TestFrozenReplicaWebSocket: a connector that stops answering over the
// WebSocket transport (SIGSTOP: its TCP connections stay open) is routed
// around by the edge's watchdog within seconds, as over QUIC, and is used
// again once it is heard from.
func TestFrozenReplicaWebSocket(t *testing.T) {
	e := startRelEdge(t, t.TempDir(), "127.0.0.1:0", "127.0.0.1:0")
	tun := createRelTunnel(t, e, "frozen", "frozen.test")
	origin := relOrigin(t)
	frozen := startReplica(t, e, tun, origin, 1, "--protocol", "websocket")
	startReplica(t, e, tun, origin, 1, "--protocol", "websocket")
	waitConnections(t, e, 2)

	stopped := time.Now()
	frozen.signal(t, syscall.SIGSTOP)
	e.waitMatch(t, regexp.MustCompile(`connection quiet`))
	t.Logf("the edge routed around the frozen replica after %v", time.Since(stopped).Round(time.Millisecond))
	for i := range 20 {
		if code, body := getVia(e.httpAddr, tun.host); code != 200 {
			t.Errorf("request %d while one replica is frozen: %d %q", i, code, body)
		}
	}
	frozen.signal(t, syscall.SIGCONT)
	e.waitMatch(t, regexp.MustCompile(`connection heard from again`))
}
