package e2e

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/internal/store"
	"github.com/adit-dev/adit/tunnel"
	"github.com/google/uuid"
)

func withRemoteConfig(c *connector.Config) { c.RemoteConfig = true }

// connConfigs returns the configuration state each live connection of the
// tunnel reported, as `tunnel info` shows it.
func connConfigs(t testing.TB, srv *edge.Server, tunnelID string) []control.Connection {
	t.Helper()
	tun, err := srv.Service().GetTunnel(context.Background(), tunnelID)
	if err != nil {
		t.Fatal(err)
	}
	return tun.Connections
}

// allRun reports whether n connections of the tunnel report version v.
func allRun(t testing.TB, srv *edge.Server, tunnelID string, n int, v int64) bool {
	conns := connConfigs(t, srv, tunnelID)
	if len(conns) != n {
		return false
	}
	for _, c := range conns {
		if c.ConfigVersion != v {
			return false
		}
	}
	return true
}

// TestRemoteConfigUnderLoad: two replicas started without a config file
// take their rules from the edge. Under steady load, the rules are
// published, changed and rolled back ten times: no request fails, every
// change is served within about 2s, and every connection reports the new
// version. A version a connector cannot apply (a unix socket it lacks) is
// reported back and the previous one stays; a connector that was offline
// gets the newest at once when it connects.
func TestRemoteConfigUnderLoad(t *testing.T) {
	srv := startEdge(t, "")
	svc := srv.Service()
	ctx := context.Background()
	tun := createTunnel(t, srv, "remote")
	originA, originB := helloOrigin(t, "A"), helloOrigin(t, "B")
	const host = "app.example.test"

	first := startConnector(t, srv, tun, nil, withRemoteConfig)
	startConnector(t, srv, tun, nil, withRemoteConfig)

	body := func() (int, string) {
		resp, err := edgeGet(srv, host, "/")
		if err != nil {
			return -1, err.Error()
		}
		return resp.StatusCode, readAll(t, resp)
	}
	// waitServed waits until a request gets want and the 4 connections
	// report version v; it returns how long the first took.
	waitServed := func(what, want string, v int64) time.Duration {
		t.Helper()
		start := time.Now()
		var took time.Duration
		waitFor(t, what, func() bool {
			if took == 0 {
				if code, b := body(); code == 200 && b == want {
					took = time.Since(start)
				}
			}
			return took != 0 && allRun(t, srv, tun.ID, 4, v)
		})
		return took
	}

	v, err := svc.Publish(ctx, tun.ID, control.PublishRequest{Hostname: host, Service: originA.URL})
	if err != nil {
		t.Fatal(err)
	}
	waitServed("the first publish", "A", v.Version)

	// Steady load: every request must be answered 200 by A or B.
	var requests, failures atomic.Int64
	var failMu sync.Mutex
	var firstFailures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, b := body()
				requests.Add(1)
				if code != 200 || (b != "A" && b != "B") {
					failures.Add(1)
					failMu.Lock()
					if len(firstFailures) < 5 {
						firstFailures = append(firstFailures, fmt.Sprintf("%d %q", code, b))
					}
					failMu.Unlock()
				}
			}
		}()
	}

	// Ten changes: publish, set, roll back, alternating the origin.
	yamlTo := func(origin string) string {
		return "ingress:\n  - hostname: " + host + "\n    service: " + origin + "\n  - service: http_status:404\n"
	}
	var worst time.Duration
	for i := range 10 {
		var (
			tc   control.TunnelConfig
			err  error
			want string
		)
		switch i % 3 {
		case 0: // publish the other origin
			want = map[bool]string{true: "B", false: "A"}[i%2 == 0]
			origin := map[string]string{"A": originA.URL, "B": originB.URL}[want]
			tc, err = svc.Publish(ctx, tun.ID, control.PublishRequest{Hostname: host, Service: origin})
		case 1: // roll back to the version before
			var cur control.TunnelConfig
			if cur, err = svc.GetTunnelConfig(ctx, tun.ID, 0); err == nil {
				var prev control.TunnelConfig
				prev, err = svc.GetTunnelConfig(ctx, tun.ID, cur.Version-1)
				if err == nil {
					want = map[bool]string{true: "A", false: "B"}[strings.Contains(prev.YAML, originA.URL)]
					tc, err = svc.RollbackTunnelConfig(ctx, tun.ID, cur.Version-1)
				}
			}
		case 2: // set a whole document
			want = map[bool]string{true: "B", false: "A"}[i%2 == 0]
			origin := map[string]string{"A": originA.URL, "B": originB.URL}[want]
			tc, err = svc.SetTunnelConfig(ctx, tun.ID, control.TunnelConfigRequest{YAML: yamlTo(origin)})
		}
		if err != nil {
			t.Fatalf("change %d: %v", i+1, err)
		}
		took := waitServed(fmt.Sprintf("change %d (version %d, %s)", i+1, tc.Version, tc.Change), want, tc.Version)
		worst = max(worst, took)
		t.Logf("change %d: version %d (%s) served in %v", i+1, tc.Version, tc.Change, took.Round(time.Millisecond))
	}

	// A version the connectors cannot apply: reported, and the one in
	// effect stays.
	inEffect := v.Version
	if cur, err := svc.GetTunnelConfig(ctx, tun.ID, 0); err == nil {
		inEffect = cur.Version
	}
	bad, err := svc.Publish(ctx, tun.ID, control.PublishRequest{Hostname: "sock.example.test", Service: "unix:/nonexistent/adit-test.sock"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every connection to report the version it could not apply", func() bool {
		conns := connConfigs(t, srv, tun.ID)
		for _, c := range conns {
			if c.ConfigFailedVersion != bad.Version || c.ConfigVersion != inEffect || !strings.Contains(c.ConfigError, "/nonexistent/adit-test.sock") {
				return false
			}
		}
		return len(conns) == 4
	})

	if v, f := gathered(t, first.Metrics(), "adit_connector_config_version"), gathered(t, first.Metrics(), "adit_connector_config_failures_total"); v != float64(inEffect) || f != 1 {
		t.Errorf("metrics: config_version %v, config_failures_total %v; want %d and 1", v, f, inEffect)
	}

	close(stop)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Errorf("%d of %d requests failed during the changes; first: %v", n, requests.Load(), firstFailures)
	}
	t.Logf("%d requests during ten changes, none failed; slowest change served after %v", requests.Load(), worst.Round(time.Millisecond))
	if worst > 5*time.Second {
		t.Errorf("a change took %v to be served; want about 2s at most", worst)
	}

	// An offline connector catches up when it connects.
	fixed, err := svc.Unpublish(ctx, tun.ID, "sock.example.test")
	if err != nil {
		t.Fatal(err)
	}
	late := startConnector(t, srv, tun, nil, withRemoteConfig)
	waitFor(t, "the late connector to run the newest version", func() bool { return late.ConfigVersion() == fixed.Version })
	waitFor(t, "every connection to report the newest version", func() bool { return allRun(t, srv, tun.ID, 6, fixed.Version) })
}

// TestRemoteConfigIgnoredByLocalConnector: a connector with a local config
// file keeps its rules, says at start that the tunnel's remote
// configuration is ignored, and its connections say so to the edge.
func TestRemoteConfigIgnoredByLocalConnector(t *testing.T) {
	srv := startEdge(t, "")
	svc := srv.Service()
	ctx := context.Background()
	tun := createTunnel(t, srv, "local", "local.example.test")
	local, remote := helloOrigin(t, "local rules"), helloOrigin(t, "remote rules")
	if _, err := svc.SetTunnelConfig(ctx, tun.ID, control.TunnelConfigRequest{YAML: "ingress:\n  - service: " + remote.URL + "\n"}); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	startConnector(t, srv, tun, mustIngress(t, local.URL), withLogBuffer(&logs), func(c *connector.Config) { c.LocalConfig = "/etc/adit/config.yml" })
	waitFor(t, "the connections to report a local config", func() bool {
		conns := connConfigs(t, srv, tun.ID)
		return len(conns) == 2 && conns[0].ConfigLocal && conns[1].ConfigLocal
	})
	if !strings.Contains(logs.String(), "the tunnel has a remote configuration on the edge; ignoring it") ||
		strings.Count(logs.String(), "ignoring it") != 1 {
		t.Errorf("want one warning that the remote configuration is ignored; logs:\n%s", logs.String())
	}
	resp, err := edgeGet(srv, "local.example.test", "/")
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); got != "local rules" {
		t.Errorf("served %q, want the local rules' origin", got)
	}
}

// TestRemoteConfigUnaskedResults: a connector may send a config_result only
// in answer to a config frame (each costs the edge an etcd write); one more
// closes its connection as a protocol error.
func TestRemoteConfigUnaskedResults(t *testing.T) {
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "hostile")
	if _, err := srv.Service().SetTunnelConfig(context.Background(), tun.ID, control.TunnelConfigRequest{YAML: "ingress:\n  - service: http_status:204\n"}); err != nil {
		t.Fatal(err)
	}
	srv.Sync(context.Background())

	t.Run("without the feature", func(t *testing.T) {
		conn := fakeDial(t, srv)
		ctrl := fakeRegister(t, conn, tun)
		tunnel.WriteMessage(ctrl, &tunnel.ConfigResult{Version: 1})
		if got := closedWith(t, conn); got != tunnel.CodeProtocol {
			t.Errorf("closed with %d (%v), want protocol", got, conn.Err())
		}
	})
	t.Run("one answer per config", func(t *testing.T) {
		conn := fakeDial(t, srv)
		ctrl, err := conn.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		tunnel.WriteMessage(ctrl, &tunnel.RegisterRequest{TunnelID: tun.ID, Secret: tun.Secret, ConnectorID: uuid.NewString(),
			Protocol: tunnel.ProtocolVersion, Features: []string{tunnel.FeatureRemoteConfig}})
		br := bufio.NewReader(ctrl)
		var resp tunnel.RegisterResponse
		if err := tunnel.ReadMessage(br, &resp); err != nil || resp.Error != "" {
			t.Fatalf("registration: %v %q", err, resp.Error)
		}
		var upd tunnel.ConfigUpdate
		if err := tunnel.ReadMessage(br, &upd); err != nil || upd.Version != 1 || !strings.Contains(string(upd.Document), "http_status:204") {
			t.Fatalf("config after registration: %+v, %v", upd, err)
		}
		tunnel.WriteMessage(ctrl, &tunnel.ConfigResult{Version: 1})
		waitFor(t, "the answer to be recorded", func() bool { return allRun(t, srv, tun.ID, 1, 1) })
		for range 100 {
			tunnel.WriteMessage(ctrl, &tunnel.ConfigResult{Version: 1})
		}
		if got := closedWith(t, conn); got != tunnel.CodeProtocol {
			t.Errorf("closed with %d (%v), want protocol", got, conn.Err())
		}
	})
}

// TestRemoteConfigTwoEdges: two edges on one etcd; a change stored through
// one reaches the connectors of the other, which serves it.
func TestRemoteConfigTwoEdges(t *testing.T) {
	st, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	shared := func(c *edge.Config) { c.EtcdEndpoints = st.Endpoints() }
	var logsA, logsB syncBuffer
	a, b := startEdgeLogged(t, &logsA, shared), startEdgeLogged(t, &logsB, shared)
	tun := createTunnel(t, a, "fleet")
	b.Sync(context.Background())
	startConnector(t, b, tun, nil, withRemoteConfig)
	origin := helloOrigin(t, "via b")

	tc, err := a.Service().Publish(context.Background(), tun.ID, control.PublishRequest{Hostname: "fleet.example.test", Service: origin.URL})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "edge b to serve the rule stored through edge a", func() bool {
		code, body := getVia(b.HTTPAddr().String(), "fleet.example.test")
		return code == 200 && body == "via b"
	})
	waitFor(t, "b's connections to report the version", func() bool { return allRun(t, a, tun.ID, 2, tc.Version) })
}
