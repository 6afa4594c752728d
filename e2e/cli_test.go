package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var reCreated = regexp.MustCompile(`Created tunnel (\S+) with id ([0-9a-f-]{36})`)

func helloOrigin(t testing.TB, text string) *httptest.Server {
	t.Helper()
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, text)
	}))
	t.Cleanup(o.Close)
	return o
}

// getVia asks the edge at addr for host and returns status and body, or
// -1 on a transport error.
func getVia(addr, host string) (int, string) {
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Host = host
	resp, err := edgeClient.Do(req)
	if err != nil {
		return -1, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestCLIWalkthrough follows the README: edge, login, create, route dns,
// run, curl; then list, info, token, delete and cleanup, all through the
// real binary against a live edge.
func TestCLIWalkthrough(t *testing.T) {
	home := t.TempDir()
	env := []string{"ADIT_HOME=" + home}
	e := startEdgeProc(t, t.TempDir(), "127.0.0.1:0")
	origin := helloOrigin(t, "hello from the origin")

	out := mustAdit(t, env, e.login...)
	if _, err := os.Stat(filepath.Join(home, "cert.json")); err != nil {
		t.Fatalf("login wrote no cert.json: %v\n%s", err, out)
	}

	out = mustAdit(t, env, "tunnel", "create", "web")
	m := reCreated.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("create printed no tunnel id:\n%s", out)
	}
	id := m[2]
	credPath := filepath.Join(home, id+".json")
	st, err := os.Stat(credPath)
	if err != nil {
		t.Fatalf("credentials file: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("credentials file mode %v, want 0600", st.Mode().Perm())
	}

	out = mustAdit(t, env, "tunnel", "route", "dns", "web", "app.example.test")
	if !strings.Contains(out, "app.example.test") {
		t.Errorf("route dns printed %q", out)
	}
	if code, body := getVia(e.httpAddr, "app.example.test"); code != 502 || !strings.Contains(body, "offline") {
		t.Errorf("before run: got %d %q, want 502 tunnel offline", code, body)
	}

	conn := startAdit(t, env, "tunnel", "run", "--url", origin.URL, "--ha-connections", "2", "web")
	conn.waitMatch(t, regexp.MustCompile(`connection registered`))
	waitFor(t, "the tunnel to serve", func() bool {
		code, body := getVia(e.httpAddr, "app.example.test")
		return code == 200 && body == "hello from the origin"
	})

	out = mustAdit(t, env, "tunnel", "list")
	if !strings.Contains(out, id) || !strings.Contains(out, "web") {
		t.Errorf("list does not show the tunnel:\n%s", out)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(mustAdit(t, env, "tunnel", "list", "-o", "json")), &list); err != nil || len(list) != 1 || list[0]["id"] != id {
		t.Errorf("list -o json: %v %v", list, err)
	}
	waitFor(t, "info to show two quic connections", func() bool {
		out := mustAdit(t, env, "tunnel", "info", "web")
		return strings.Count(out, "quic") >= 2
	})

	// A second replica from the token, given through the environment.
	token := strings.TrimSpace(mustAdit(t, env, "tunnel", "token", "web"))
	replica := startAdit(t, append(env, "ADIT_TUNNEL_TOKEN="+token), "tunnel", "run", "--url", origin.URL, "--ha-connections", "1")
	replica.waitMatch(t, regexp.MustCompile(`connection registered`))

	out, code := runAdit(t, env, "tunnel", "delete", "web")
	if code == 0 || !strings.Contains(out, "active connection") {
		t.Errorf("delete with live connectors: exit %d, %q; want a refusal", code, out)
	}

	mustAdit(t, env, "tunnel", "cleanup", "web")
	// Connectors whose connections were cleaned up come back by themselves.
	waitFor(t, "the tunnel to serve after cleanup", func() bool {
		code, _ := getVia(e.httpAddr, "app.example.test")
		return code == 200
	})

	mustAdit(t, env, "tunnel", "delete", "-f", "web")
	for _, p := range []*proc{conn, replica} {
		if code := p.wait(t, 60*time.Second); code == 0 {
			t.Errorf("connector exited 0 after its tunnel was deleted")
		}
		if !strings.Contains(p.out.String(), "authentication failed for tunnel "+id) {
			t.Errorf("connector output lacks the auth failure:\n%s", p.out.String())
		}
	}
	if code, _ := getVia(e.httpAddr, "app.example.test"); code != 404 {
		t.Errorf("deleted tunnel's route: got %d, want 404", code)
	}
}

// TestWrongSecret: a connector with a bad secret exits non-zero at once
// with a clear message, without a retry storm.
func TestWrongSecret(t *testing.T) {
	home := t.TempDir()
	env := []string{"ADIT_HOME=" + home}
	e := startEdgeProc(t, t.TempDir(), "127.0.0.1:0")
	mustAdit(t, env, e.login...)
	id := reCreated.FindStringSubmatch(mustAdit(t, env, "tunnel", "create", "secretive"))[2]

	var cred map[string]any
	credPath := filepath.Join(home, id+".json")
	b, _ := os.ReadFile(credPath)
	json.Unmarshal(b, &cred)
	cred["TunnelSecret"] = "d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldCB3cm9uZyBzZWNyZXQh" // 36 bytes, wrong
	b, _ = json.Marshal(cred)
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, b, 0o600)

	p := startAdit(t, env, "tunnel", "run", "--url", "http://127.0.0.1:1", "--credentials-file", bad)
	if code := p.wait(t, 30*time.Second); code == 0 {
		t.Errorf("exit 0 with a wrong secret")
	}
	if out := p.out.String(); !strings.Contains(out, "authentication failed for tunnel "+id) {
		t.Errorf("output lacks %q:\n%s", "authentication failed for tunnel "+id, out)
	}
}

// TestEdgeRestart: tunnels and routes persist in the data dir, and a
// running connector comes back on its own.
func TestEdgeRestart(t *testing.T) {
	home := t.TempDir()
	env := []string{"ADIT_HOME=" + home}
	dataDir := t.TempDir()
	e := startEdgeProc(t, dataDir, "127.0.0.1:0")
	mustAdit(t, env, e.login...)
	mustAdit(t, env, "tunnel", "create", "durable")
	mustAdit(t, env, "tunnel", "route", "dns", "durable", "durable.test")
	origin := helloOrigin(t, "still here")
	conn := startAdit(t, env, "tunnel", "run", "--url", origin.URL, "durable")
	conn.waitMatch(t, regexp.MustCompile(`connection registered`))
	waitFor(t, "the tunnel to serve", func() bool {
		code, _ := getVia(e.httpAddr, "durable.test")
		return code == 200
	})

	e.stop(t)
	e2 := startEdgeProc(t, dataDir, e.tunnelAddr) // the address connectors know
	mustAdit(t, env, e2.login...)                 // the API port is new; the token is the same
	waitFor(t, "the connector to come back", func() bool {
		code, body := getVia(e2.httpAddr, "durable.test")
		return code == 200 && body == "still here"
	})
	if out := mustAdit(t, env, "tunnel", "list"); !strings.Contains(out, "durable") {
		t.Errorf("tunnel gone after restart:\n%s", out)
	}
}

// TestQuickstart runs `adit quickstart` as a new user would.
func TestQuickstart(t *testing.T) {
	p := startAdit(t, nil, "quickstart", "--http-addr", "127.0.0.1:0")
	m := p.waitMatch(t, regexp.MustCompile(`http://([a-z0-9-]+\.localhost):(\d+)`))
	code, body := getVia("127.0.0.1:"+m[2], m[1])
	if code != 200 || !strings.Contains(body, "adit") {
		t.Errorf("quickstart URL answered %d %q", code, body)
	}
	p.stop(t)
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("quickstart exit code %d after SIGTERM, want 0", code)
	}
}
