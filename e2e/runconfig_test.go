package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestRunConfigSettings: `tunnel run --config` honours the file's top-level
// settings (protocol, ha-connections, metrics, loglevel, logfile, pidfile),
// a flag on the command line wins over the file, and a setting adit does
// not implement is refused by name.
func TestRunConfigSettings(t *testing.T) {
	home := t.TempDir()
	env := []string{"ADIT_HOME=" + home}
	e := startEdgeProc(t, t.TempDir(), "127.0.0.1:0")
	origin := helloOrigin(t, "configured")
	mustAdit(t, env, e.login...)
	id := reCreated.FindStringSubmatch(mustAdit(t, env, "tunnel", "create", "cfg"))[2]
	mustAdit(t, env, "tunnel", "route", "dns", "cfg", "cfg.example.test")

	dir := t.TempDir()
	logFile, pidFile, cfgFile := filepath.Join(dir, "adit.log"), filepath.Join(dir, "adit.pid"), filepath.Join(dir, "config.yml")
	cfg := fmt.Sprintf(`tunnel: %s
protocol: http2
ha-connections: 3
grace-period: 1s
metrics: 127.0.0.1:0
loglevel: debug
logfile: %s
pidfile: %s
no-autoupdate: true
ingress:
  - hostname: cfg.example.test
    service: %s
  - service: http_status:404
`, id, logFile, pidFile, origin.URL)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	// The command line's --ha-connections wins over the file's 3.
	p := startAdit(t, env, "tunnel", "run", "--config", cfgFile, "--ha-connections", "2")
	p.waitCount(t, regexp.MustCompile(`connection registered".*protocol=websocket`), 2)
	metrics := p.waitMatch(t, regexp.MustCompile(`metrics listening".* addr=(\S+)`))[1]
	waitFor(t, "the tunnel to serve", func() bool {
		code, body := getVia(e.httpAddr, "cfg.example.test")
		return code == 200 && body == "configured"
	})
	waitFor(t, "info to show two websocket connections", func() bool {
		return strings.Count(mustAdit(t, env, "tunnel", "info", "cfg"), "websocket") == 2
	})
	if resp, err := http.Get("http://" + metrics + "/ready"); err != nil || resp.StatusCode != 200 {
		t.Errorf("metrics /ready from the file's metrics address: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if !strings.Contains(p.out.String(), "level=DEBUG") {
		t.Errorf("loglevel debug: no debug line in the output:\n%s", p.out.String())
	}
	waitFor(t, "the pidfile", func() bool {
		b, err := os.ReadFile(pidFile)
		return err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(p.cmd.Process.Pid)
	})
	logged, err := os.ReadFile(logFile)
	if err != nil || !strings.Contains(string(logged), "connection registered") {
		t.Errorf("logfile: %v\n%s", err, logged)
	}
	if st, err := os.Stat(logFile); err == nil && st.Mode().Perm() != 0o600 {
		t.Errorf("logfile mode %v, want 0600", st.Mode().Perm())
	}
	p.stop(t)
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pidfile left after exit: %v", err)
	}

	// Refused by name, with the reason, before anything starts.
	os.WriteFile(cfgFile, []byte(cfg+"retries: 3\n"), 0o600)
	out, code := runAdit(t, env, "tunnel", "run", "--config", cfgFile)
	if code == 0 || !strings.Contains(out, cfgFile+": retries: not implemented") {
		t.Errorf("retries: exit %d, %q; want a refusal naming it", code, out)
	}
}
