package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestRemoteConfigCLI walks the remotely-managed tunnel through the real
// binaries: publish, a connector started without a config file, ingress
// set (refused with the validator's message, then accepted), history, get,
// rollback, info showing the version each connection runs, unpublish.
func TestRemoteConfigCLI(t *testing.T) {
	home := t.TempDir()
	env := []string{"ADIT_HOME=" + home, "HOME=" + t.TempDir()} // no config file anywhere
	e := startEdgeProc(t, t.TempDir(), "127.0.0.1:0")
	one, two := helloOrigin(t, "one"), helloOrigin(t, "two")
	mustAdit(t, env, e.login...)
	mustAdit(t, env, "tunnel", "create", "rm")

	out := mustAdit(t, env, "tunnel", "publish", "rm", "app.example.test", one.URL)
	if !strings.Contains(out, "Published app.example.test on tunnel rm: configuration version 1.") {
		t.Errorf("publish printed %q", out)
	}
	conn := startAdit(t, env, "tunnel", "run", "--ha-connections", "2", "rm")
	conn.waitMatch(t, regexp.MustCompile(`taking the ingress rules from the edge`))
	conn.waitMatch(t, regexp.MustCompile(`configuration applied".* version=1`))
	served := func(want string) func() bool {
		return func() bool { code, body := getVia(e.httpAddr, "app.example.test"); return code == 200 && body == want }
	}
	waitFor(t, "the published rule to serve", served("one"))

	bad, _ := filepath.Abs("../ingress/testdata/bad/unknown-rule-key.yml")
	out, code := runAdit(t, env, "tunnel", "ingress", "set", "rm", "--file", bad)
	if want := "ingress set: " + bad + `: ingress: rule 2: unknown key "servce" (line 7)`; code != 1 || !strings.Contains(out, want) {
		t.Errorf("set of a bad file: exit %d, %q; want 1 and %q", code, out, want)
	}
	good := filepath.Join(t.TempDir(), "config.yml")
	os.WriteFile(good, []byte("ingress:\n  - hostname: app.example.test\n    service: "+two.URL+"\n  - service: http_status:404\n"), 0o600)
	out = mustAdit(t, env, "tunnel", "ingress", "set", "rm", "--file", good)
	if !strings.Contains(out, "Stored version 2 of tunnel rm's configuration (2 rules).") {
		t.Errorf("set printed %q", out)
	}
	waitFor(t, "version 2 to serve", served("two"))

	out = mustAdit(t, env, "tunnel", "ingress", "history", "rm")
	if !regexp.MustCompile(`(?m)^2\s.*\sset$`).MatchString(out) || !regexp.MustCompile(`(?m)^1\s.*\spublish app\.example\.test$`).MatchString(out) {
		t.Errorf("history:\n%s", out)
	}
	var v1 struct {
		Version int64 `json:"version"`
		Config  struct {
			Ingress []struct{ Hostname, Service string } `json:"ingress"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(mustAdit(t, env, "tunnel", "ingress", "get", "rm", "--version", "1", "-o", "json")), &v1); err != nil ||
		v1.Version != 1 || len(v1.Config.Ingress) != 2 || v1.Config.Ingress[0].Service != one.URL {
		t.Errorf("get --version 1 -o json: %+v, %v", v1, err)
	}
	if out := mustAdit(t, env, "tunnel", "ingress", "get", "rm"); !strings.Contains(out, "service: "+two.URL) {
		t.Errorf("get: %s", out)
	}

	mustAdit(t, env, "tunnel", "ingress", "rollback", "rm", "--version", "1")
	waitFor(t, "the rollback to serve", served("one"))
	waitFor(t, "info to show both connections on version 3", func() bool {
		return strings.Count(mustAdit(t, env, "tunnel", "info", "rm"), " v3") == 2
	})

	// A version the connector cannot apply is shown by info and get.
	mustAdit(t, env, "tunnel", "publish", "rm", "sock.example.test", "unix:/nonexistent/adit-cli-test.sock")
	waitFor(t, "info to show the version not applied", func() bool {
		out := mustAdit(t, env, "tunnel", "info", "rm")
		return strings.Count(out, "v3 (v4 failed)") == 2 && strings.Contains(out, "did not apply configuration version 4: rule 2: service \"unix:/nonexistent/adit-cli-test.sock\"")
	})
	if out := mustAdit(t, env, "tunnel", "ingress", "get", "rm"); !strings.Contains(out, "runs version 3: version 4 not applied: rule 2:") {
		t.Errorf("get does not show the version not applied:\n%s", out)
	}
	waitFor(t, "the rules in effect to still serve", served("one"))

	mustAdit(t, env, "tunnel", "unpublish", "rm", "app.example.test")
	waitFor(t, "the unpublished hostname to be unknown", func() bool {
		code, _ := getVia(e.httpAddr, "app.example.test")
		return code == 404
	})
}
