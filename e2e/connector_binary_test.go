package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestConnectorBinaryWalkthrough is the README's walkthrough on a private
// machine that has only adit-connector: the edge is the full adit; login,
// create, route dns, run, ready, list, info and ingress validate are
// adit-connector's.
func TestConnectorBinaryWalkthrough(t *testing.T) {
	slim := connectorBin(t)
	home := t.TempDir()
	env := []string{"ADIT_HOME=" + home}
	e := startEdgeProc(t, t.TempDir(), "127.0.0.1:0")
	origin := helloOrigin(t, "hello through adit-connector")

	mustBin(t, slim, env, e.login...)
	m := reCreated.FindStringSubmatch(mustBin(t, slim, env, "tunnel", "create", "private"))
	if m == nil {
		t.Fatal("adit-connector tunnel create printed no tunnel id")
	}
	id := m[2]
	if _, err := os.Stat(filepath.Join(home, id+".json")); err != nil {
		t.Fatalf("credentials file: %v", err)
	}
	mustBin(t, slim, env, "tunnel", "route", "dns", "private", "private.example.test")

	conn := startBin(t, slim, env, "tunnel", "run", "--url", origin.URL, "--ha-connections", "2", "--metrics", "127.0.0.1:0", "private")
	metricsAddr := conn.waitMatch(t, regexp.MustCompile(`metrics listening.* addr=(\S+)`))[1]
	conn.waitMatch(t, regexp.MustCompile(`connection registered`))
	waitFor(t, "the tunnel to serve", func() bool {
		code, body := getVia(e.httpAddr, "private.example.test")
		return code == 200 && body == "hello through adit-connector"
	})

	if out := mustBin(t, slim, env, "tunnel", "ready", "--metrics", metricsAddr); !strings.HasPrefix(out, "ready: ") {
		t.Errorf("tunnel ready: got %q, want \"ready: N registered connections\"", out)
	}
	if out := mustBin(t, slim, env, "tunnel", "list"); !strings.Contains(out, id) || !strings.Contains(out, "private") {
		t.Errorf("tunnel list: got\n%s\nwant the tunnel %s", out, id)
	}
	waitFor(t, "info to show two quic connections", func() bool {
		return strings.Count(mustBin(t, slim, env, "tunnel", "info", "private"), "quic") >= 2
	})

	cfg := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(cfg, []byte("tunnel: "+id+"\ningress:\n  - hostname: private.example.test\n    service: "+origin.URL+"\n  - service: http_status:404\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := runBin(t, slim, env, "tunnel", "ingress", "validate", "--config", cfg); code != 0 || !strings.Contains(out, "OK") {
		t.Errorf("tunnel ingress validate: exit %d, %q; want 0 and OK", code, out)
	}
	if out := mustBin(t, slim, env, "version"); !strings.HasPrefix(out, "adit ") {
		t.Errorf("version: got %q, want adit's version line", out)
	}
	for _, cmd := range []string{"edge", "quickstart"} {
		out, code := runBin(t, slim, env, cmd)
		if want := `adit-connector: unknown command "` + cmd + `"`; code != 1 || !strings.HasPrefix(out, want) {
			t.Errorf("adit-connector %s: exit %d, %q; want 1 and %q", cmd, code, out, want)
		}
	}

	conn.stop(t)
	if code := conn.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("adit-connector tunnel run: exit code %d after SIGTERM, want 0", code)
	}
}

// TestConnectorBinaryFlags: every command adit-connector has, it has with
// adit's flags, defaults and help, up to the program name; it has every
// command of adit except the edge's.
func TestConnectorBinaryFlags(t *testing.T) {
	slim := connectorBin(t)
	for _, args := range [][]string{
		{"login"}, {"version"},
		{"access"}, {"access", "tcp"},
		{"tunnel"}, {"tunnel", "run"}, {"tunnel", "ready"}, {"tunnel", "create"}, {"tunnel", "list"},
		{"tunnel", "info"}, {"tunnel", "token"}, {"tunnel", "delete"}, {"tunnel", "cleanup"},
		{"tunnel", "route"}, {"tunnel", "route", "dns"}, {"tunnel", "route", "tcp"},
		{"tunnel", "ingress"}, {"tunnel", "ingress", "validate"}, {"tunnel", "ingress", "rule"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			help := append(args, "--help")
			want := mustAdit(t, nil, help...)
			got := strings.ReplaceAll(mustBin(t, slim, nil, help...), "adit-connector", "adit")
			if got != want {
				t.Errorf("adit-connector %s: got\n%s\nwant (as adit's)\n%s", strings.Join(help, " "), got, want)
			}
		})
	}

	// The root lists adit's commands but edge and quickstart.
	commands := func(help string) []string {
		var cmds []string
		_, list, _ := strings.Cut(help, "Available Commands:\n")
		list, _, _ = strings.Cut(list, "\n\n")
		for line := range strings.Lines(list) {
			if f := strings.Fields(line); len(f) > 0 {
				cmds = append(cmds, f[0])
			}
		}
		return cmds
	}
	var want []string
	for _, c := range commands(mustAdit(t, nil, "--help")) {
		if c != "edge" && c != "quickstart" {
			want = append(want, c)
		}
	}
	got := commands(mustBin(t, slim, nil, "--help"))
	if strings.Join(got, " ") != strings.Join(want, " ") || len(got) == 0 {
		t.Errorf("adit-connector commands: got %q, want %q (adit's but edge and quickstart)", got, want)
	}
}
