package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/poll"
)

var reJoinToken = regexp.MustCompile(`aditjoin\.\S+`)

// fleetEdge is an `adit edge` process of a fleet, on its own loopback
// address, with the CLI environment logged in to its API.
type fleetEdge struct {
	*edgeProc
	name, dataDir string
	env           []string // ADIT_HOME logged in to this edge's API
}

// startFleetEdge starts `adit edge` named name on ip (port 0 everywhere),
// with extra flags (--join ...), and logs a CLI home in to it.
func startFleetEdge(t *testing.T, name, ip string, extra ...string) *fleetEdge {
	t.Helper()
	dataDir := t.TempDir()
	args := append([]string{"edge", "--data-dir", dataDir, "--node-name", name, "--region", "r-" + name,
		"--http-addr", ip + ":0", "--tunnel-addr", ip + ":0", "--api-addr", ip + ":0", "--lease-ttl", "2s"}, extra...)
	p := startAdit(t, nil, args...)
	e := &fleetEdge{edgeProc: &edgeProc{proc: p}, name: name, dataDir: dataDir}
	e.httpAddr = p.waitMatch(t, reHTTPAddr)[1]
	e.tunnelAddr = p.waitMatch(t, reTunnelAddr)[1]
	e.apiURL = p.waitMatch(t, reAPIURL)[1]
	for _, f := range strings.Fields(p.waitMatch(t, reLogin)[1]) {
		e.login = append(e.login, strings.Trim(f, `"`))
	}
	e.env = []string{"ADIT_HOME=" + t.TempDir()}
	mustAdit(t, e.env, e.login...)
	return e
}

// listJSON runs an adit list command with -o json on e's API.
func listJSON[T any](t *testing.T, e *fleetEdge, args ...string) []T {
	t.Helper()
	out := mustAdit(t, e.env, append(args, "-o", "json")...)
	var v []T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("adit %v -o json: %v\n%s", args, err, out)
	}
	return v
}

func memberNamesOf(t *testing.T, e *fleetEdge) []string {
	var ns []string
	for _, m := range listJSON[control.EdgeMember](t, e, "edge", "members") {
		n := m.Name
		if m.Learner {
			n += "(learner)"
		}
		ns = append(ns, n)
	}
	return ns
}

func edgeNamesOf(t *testing.T, e *fleetEdge) []string {
	var ns []string
	for _, n := range listJSON[control.EdgeNode](t, e, "edge", "list") {
		ns = append(ns, n.Name)
	}
	return ns
}

// TestFleetJoin: three `adit edge` processes, each on its own loopback
// address, form one fleet on their embedded etcd servers: the second
// joins the first with a join token, the third joins the second. A route
// created on one edge is served by another; with one edge killed (-9) the
// other two still take writes, and its record leaves the registry within
// the lease TTL; the dead member is removed by name, and an edge leaves on
// its own. Bad join tokens are refused with a clear error.
func TestFleetJoin(t *testing.T) {
	a := startFleetEdge(t, "edge-a", "127.0.0.2")
	out := mustAdit(t, a.env, "edge", "join-token", "create", "--ttl", "10m", "--description", "e2e")
	token := reJoinToken.FindString(out)
	if token == "" {
		t.Fatalf("join-token create printed no token:\n%s", out)
	}
	tokenFile := filepath.Join(t.TempDir(), "join-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// A token with a wrong secret: refused, naming why.
	bad := token[:len(token)-4] + strings.Map(func(r rune) rune {
		if r == 'A' {
			return 'B'
		}
		return 'A'
	}, token[len(token)-4:])
	badFile := filepath.Join(t.TempDir(), "bad-token")
	os.WriteFile(badFile, []byte(bad), 0o600)
	out, code := runAdit(t, nil, "edge", "--data-dir", t.TempDir(), "--node-name", "intruder", "--http-addr", "127.0.0.5:0",
		"--tunnel-addr", "127.0.0.5:0", "--api-addr", "127.0.0.5:0", "--join", a.apiURL, "--join-token-file", badFile)
	if code != 1 || !strings.Contains(out, "refused: the join token is unknown, expired or revoked") {
		t.Errorf("join with a wrong secret: exit %d:\n%s", code, out)
	}
	os.WriteFile(badFile, []byte("aditjoin.nonsense"), 0o600)
	out, code = runAdit(t, nil, "edge", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.5:0",
		"--tunnel-addr", "127.0.0.5:0", "--api-addr", "127.0.0.5:0", "--join", a.apiURL, "--join-token-file", badFile)
	if code != 1 || !strings.Contains(out, "--join-token-file: join token: want aditjoin.") {
		t.Errorf("join with a malformed token: exit %d:\n%s", code, out)
	}

	t0 := time.Now()
	b := startFleetEdge(t, "edge-b", "127.0.0.3", "--join", a.apiURL, "--join-token-file", tokenFile)
	t1 := time.Now()
	c := startFleetEdge(t, "edge-c", "127.0.0.4", "--join", b.apiURL, "--join-token-file", tokenFile)
	t.Logf("joins: edge-b serving %v after its start, edge-c %v (etcd waits until every voter has been up 5s)", t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
	if got := memberNamesOf(t, c); !slices.Equal(got, []string{"edge-a", "edge-b", "edge-c"}) {
		t.Errorf("members: got %v, want three voting members", got)
	}
	poll.Until(t, "three edges in the registry", func() bool {
		return slices.Equal(edgeNamesOf(t, a), []string{"edge-a", "edge-b", "edge-c"})
	})
	for _, n := range listJSON[control.EdgeNode](t, b, "edge", "list") {
		if n.Region != "r-"+n.Name || n.Health != control.EdgeHealthOK || !strings.HasPrefix(n.APIAddr, "127.0.0.") {
			t.Errorf("registry record: %+v", n)
		}
	}
	// Every edge serves certificates from the fleet's one CA.
	caA, _ := os.ReadFile(filepath.Join(a.dataDir, "tls", "ca.pem"))
	caC, _ := os.ReadFile(filepath.Join(c.dataDir, "tls", "ca.pem"))
	if len(caA) == 0 || string(caA) != string(caC) {
		t.Error("edge-c's CA is not edge-a's")
	}
	if fi, err := os.Stat(filepath.Join(c.dataDir, "tls", "ca-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("edge-c's CA key: %v, mode %v; want 0600", err, fi.Mode())
	}

	// A tunnel and route created through edge-a, served by edge-c.
	origin := helloOrigin(t, "served by the fleet")
	m := reCreated.FindStringSubmatch(mustAdit(t, a.env, "tunnel", "create", "web"))
	if m == nil {
		t.Fatal("tunnel create printed no id")
	}
	credFile := filepath.Join(strings.TrimPrefix(a.env[0], "ADIT_HOME="), m[2]+".json")
	mustAdit(t, a.env, "tunnel", "route", "dns", "web", "web.example.test")
	startAdit(t, a.env, "tunnel", "run", "--credentials-file", credFile, "--url", origin.URL,
		"--edge", c.tunnelAddr, "--edge-server-name", "localhost", "--ha-connections", "1").waitMatch(t, reRegistered)
	if status, body := getVia(c.httpAddr, "web.example.test"); status != 200 || body != "served by the fleet" {
		t.Fatalf("route made on edge-a, via edge-c: %d %q", status, body)
	}

	// kill -9 edge-a: edge-b and edge-c keep the quorum and take writes.
	a.cmd.Process.Kill()
	a.wait(t, 10*time.Second)
	killed := time.Now()
	mustAdit(t, b.env, "tunnel", "route", "dns", "web", "after.example.test")
	t.Logf("first write after kill -9 of edge-a done %v after the kill", time.Since(killed).Round(time.Millisecond))
	if status, body := getVia(c.httpAddr, "after.example.test"); status != 200 || body != "served by the fleet" {
		t.Errorf("route made on edge-b after edge-a died, via edge-c: %d %q", status, body)
	}
	poll.Until(t, "edge-a leaves the registry", func() bool {
		return slices.Equal(edgeNamesOf(t, c), []string{"edge-b", "edge-c"})
	})
	gone := time.Since(killed)
	t.Logf("edge-a left the registry %v after the kill (lease TTL 2s)", gone.Round(time.Millisecond))
	// edge-a led etcd: the lease outlives it by the new leader's election
	// and the election timeout etcd adds to every lease then (1s).
	if gone > 12*time.Second {
		t.Errorf("edge-a left the registry %v after the kill: want within the TTL (2s), an election and 1s, and a margin for a loaded machine (12s in all)", gone)
	}
	// Its member stays until removed by name; a live one is refused.
	if got := memberNamesOf(t, b); !slices.Equal(got, []string{"edge-a", "edge-b", "edge-c"}) {
		t.Errorf("members after the kill: %v", got)
	}
	if out, code := runAdit(t, b.env, "edge", "leave", "edge-c"); code != 1 || !strings.Contains(out, "edge edge-c is alive") {
		t.Errorf("leave of a live edge by name: exit %d: %s", code, out)
	}
	mustAdit(t, b.env, "edge", "leave", "edge-a")
	if got := memberNamesOf(t, c); !slices.Equal(got, []string{"edge-b", "edge-c"}) {
		t.Errorf("members after leave edge-a: %v", got)
	}

	// edge-c leaves on its own: it stops, exit 0, its etcd data gone.
	out = mustAdit(t, c.env, "edge", "leave")
	if !strings.Contains(out, "edge-c is leaving the fleet") {
		t.Errorf("leave: %s", out)
	}
	if code := c.wait(t, 60*time.Second); code != 0 {
		t.Errorf("edge-c exited %d after leaving", code)
	}
	if _, err := os.Stat(filepath.Join(c.dataDir, "etcd", "member")); !os.IsNotExist(err) {
		t.Errorf("edge-c's etcd data after leaving: %v", err)
	}
	if got := memberNamesOf(t, b); !slices.Equal(got, []string{"edge-b"}) {
		t.Errorf("members after edge-c left: %v", got)
	}
	mustAdit(t, b.env, "tunnel", "route", "dns", "web", "alone.example.test")

	// A revoked token joins no one.
	id := listJSON[control.JoinToken](t, b, "edge", "join-token", "list")
	if len(id) != 1 {
		t.Fatalf("join tokens: %+v", id)
	}
	mustAdit(t, b.env, "edge", "join-token", "revoke", id[0].ID)
	out, code = runAdit(t, nil, "edge", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.5:0",
		"--tunnel-addr", "127.0.0.5:0", "--api-addr", "127.0.0.5:0", "--join", b.apiURL, "--join-token-file", tokenFile)
	if code != 1 || !strings.Contains(out, "the join token is unknown, expired or revoked") {
		t.Errorf("join with a revoked token: exit %d:\n%s", code, out)
	}
}
