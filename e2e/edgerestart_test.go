package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge"
)

// TestEdgeRestartManyConnectors restarts an edge (drain and close, as
// SIGTERM does, then a new edge.Server on the same data directory and
// ports) under many connectors in "auto" transport mode, and checks what
// issue 16 saw go wrong at 100 connectors: the stopping edge registers
// nobody, no connection record outlives its connection, no connector
// takes the restart for blocked UDP (falls back to WebSocket), and every
// connection comes back. It logs how long that took.
//
// ADIT_RESTART_CONNECTORS=N and ADIT_RESTART_HA=M run it at another scale
// (the default, 20 connectors of 2 connections, keeps CI cheap).
func TestEdgeRestartManyConnectors(t *testing.T) {
	connectors, ha := envInt(t, "ADIT_RESTART_CONNECTORS", 20), envInt(t, "ADIT_RESTART_HA", 2)
	want := connectors * ha
	dataDir := t.TempDir()
	oldLogs := &syncBuffer{}
	// The edge advertises the address the connectors dial, so that the
	// fleet's list names it as they do.
	old := startRestartEdge(t, dataDir, "127.0.0.1:0", freeUDPAddr(t), oldLogs)
	origin := helloOrigin(t, "hello")
	ing := mustIngress(t, origin.URL)

	connLogs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the connectors' log lines, by message:\n%s\nthe old edge's:\n%s", msgCounts(connLogs.String()), msgCounts(oldLogs.String()))
			if i := strings.Index(connLogs.String(), "moving the connection to another edge"); i >= 0 {
				t.Logf("a move: %s", connLogs.String()[i:i+300])
			}
		}
	})
	tunnels := make([]tunnelFixture, connectors)
	for i := range tunnels {
		tunnels[i] = createTunnel(t, old, fmt.Sprintf("restart-%d", i), fmt.Sprintf("r%d.restart.test", i))
	}
	for _, tun := range tunnels {
		goConnector(t, connector.Config{
			TunnelID:      tun.ID,
			Secret:        tun.Secret,
			EdgeAddrs:     []string{old.TunnelAddr().String()},
			EdgeCA:        old.CAPEM(),
			ServerName:    "localhost",
			Ingress:       ing,
			HAConnections: ha,
			Protocol:      connector.ProtocolAuto,
			Logger:        slog.New(slog.NewTextHandler(connLogs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		})
	}
	limit := time.Minute + time.Duration(want)*100*time.Millisecond // generous: a loaded 2-core machine
	if !waitWithin(limit, func() bool { return old.Connections() == want }) {
		t.Fatalf("the edge holds %d connections after %v, want %d", old.Connections(), limit, want)
	}
	tunnelAddr, httpAddr := old.TunnelAddr().String(), old.HTTPAddr().String()

	// Two restarts: drain and close, as `adit edge` does on SIGTERM; then
	// Close alone (what the edge does when a listener fails). Each time a
	// new edge starts on the same data directory and ports.
	for _, drain := range []bool{true, false} {
		how := "Close"
		if drain {
			how = "Drain and Close"
		}
		stopping := time.Now()
		connMark, oldMark := len(connLogs.String()), len(oldLogs.String())
		if drain {
			old.Drain(context.Background())
		}
		drained := time.Now()
		if err := old.Close(); err != nil {
			t.Logf("closing the old edge: %v", err)
		}
		stopped := time.Now()
		newLogs := &syncBuffer{}
		srv := startRestartEdge(t, dataDir, httpAddr, tunnelAddr, newLogs)
		started := time.Now()
		if !waitWithin(limit, func() bool { return srv.Connections() == want }) {
			t.Fatalf("%s: %d connections back after %v, want %d", how, srv.Connections(), limit, want)
		}
		back := time.Now()
		t.Logf("%s, %d connectors × %d connections: the old edge drained in %v and closed in %v; the new one started in %v; all back %v after it started (%v after the restart began)",
			how, connectors, ha, drained.Sub(stopping).Round(time.Millisecond), stopped.Sub(drained).Round(time.Millisecond),
			started.Sub(stopped).Round(time.Millisecond), back.Sub(started).Round(time.Millisecond), back.Sub(stopping).Round(time.Millisecond))

		// The stopping edge registered nobody: every registration it
		// logged came before it began to stop (all were steady then).
		if n := strings.Count(oldLogs.String()[oldMark:], `msg="connector registered"`); n > 0 {
			t.Errorf("%s: the old edge registered %d connections while it was stopping", how, n)
		}

		// No stale record: exactly one per connection the new edge holds,
		// all of them QUIC. A connection the edge closed a moment ago (a
		// slot the connector registered again) may still be on its way
		// out.
		var all []control.Connection
		records := func() int {
			all = all[:0]
			for _, tun := range tunnels {
				conns, err := srv.Service().ListConnections(t.Context(), tun.ID)
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, conns...)
			}
			return len(all)
		}
		recordsWait := time.Now()
		waitFor(t, fmt.Sprintf("%d connection records", want), func() bool { return records() == want && srv.Connections() == want })
		if d := time.Since(recordsWait); d > time.Second {
			t.Logf("%s: the records matched the connections %v after the connections were back", how, d.Round(time.Millisecond))
		}
		ws := 0
		for _, c := range all {
			if c.Since.Before(stopped) {
				t.Errorf("%s: tunnel %s: a record of connection %s from before the restart (since %v)", how, c.TunnelID, c.ID, c.Since)
			}
			if c.Protocol != "quic" {
				ws++
			}
		}
		if ws > 0 {
			t.Errorf("%s: %d connections came back over WebSocket, want all over QUIC", how, ws)
		}
		if n := strings.Count(connLogs.String()[connMark:], "using WebSocket"); n > 0 {
			t.Errorf("%s: %d connectors fell back to WebSocket during the restart", how, n)
		}
		if t.Failed() {
			t.Fatalf("%s: the new edge's log:\n%s", how, tail(newLogs.String(), 100))
		}
		old, oldLogs = srv, newLogs
	}
}

// TestEdgeKilledLeavesNoRecords kills an `adit edge` process (SIGKILL:
// nothing is cleaned up on the way out) under a replica and starts it
// again on the same data directory. Its embedded etcd renews the dead
// run's lease for a whole TTL, so the dead run's connection records would
// linger beside the new ones: the new run deletes them at start. From the
// moment the tunnel's connections are back, `tunnel info` shows exactly
// those.
func TestEdgeKilledLeavesNoRecords(t *testing.T) {
	dataDir := t.TempDir()
	e := startRelEdge(t, dataDir, "127.0.0.1:0", "127.0.0.1:0")
	tun := createRelTunnel(t, e, "killed", "killed.test")
	startReplica(t, e, tun, relOrigin(t), 4)
	waitConnections(t, e, 4)
	e.signal(t, syscall.SIGKILL)
	e.wait(t, 10*time.Second)
	e = startRelEdge(t, dataDir, e.httpAddr, e.tunnelAddr)
	waitConnections(t, e, 4)
	mustAdit(t, tun.env, e.login...) // the API listens on another port now
	var info control.Tunnel
	if err := json.Unmarshal([]byte(mustAdit(t, tun.env, "tunnel", "info", tun.id, "-o", "json")), &info); err != nil {
		t.Fatal(err)
	}
	if len(info.Connections) != 4 {
		t.Errorf("tunnel info shows %d connections once the 4 are back, want 4 (none of the killed run's)", len(info.Connections))
	}
	if !strings.Contains(e.out.String(), "deleted the connection records a previous run left") {
		t.Errorf("the restarted edge did not say it deleted the killed run's records")
	}
}

// startRestartEdge starts an in-process edge whose text log goes to logs.
func startRestartEdge(t testing.TB, dataDir, httpAddr, tunnelAddr string, logs *syncBuffer) *edge.Server {
	t.Helper()
	srv, err := edge.Start(context.Background(), edge.Config{
		DataDir:       dataDir,
		HTTPAddr:      httpAddr,
		TunnelAddr:    tunnelAddr,
		AdvertiseAddr: tunnelAddr,
		APIAddr:       "127.0.0.1:0",
		Logger:        slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatalf("starting edge: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// envInt reads a positive integer from the environment, or def.
func envInt(t testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// msgCounts counts a text log's lines by their msg.
func msgCounts(log string) string {
	n := map[string]int{}
	for _, line := range strings.Split(log, "\n") {
		if i := strings.Index(line, "msg="); i >= 0 {
			m := line[i+4:]
			if strings.HasPrefix(m, `"`) {
				if j := strings.Index(m[1:], `"`); j >= 0 {
					m = m[:j+2]
				}
			} else if j := strings.IndexByte(m, ' '); j >= 0 {
				m = m[:j]
			}
			if k := strings.Index(line, " err="); k >= 0 {
				m += " err=" + line[k+5:min(len(line), k+90)]
			}
			n[m]++
		}
	}
	var b strings.Builder
	for m, c := range n {
		fmt.Fprintf(&b, "%6d %s\n", c, m)
	}
	return b.String()
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
