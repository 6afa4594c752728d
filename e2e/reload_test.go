package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/adit-dev/adit/credentials"
	"github.com/adit-dev/adit/edge"
)

// reloadFixture is an in-process edge with a tunnel routed for
// reload.test, and the files `adit tunnel run --config` needs.
type reloadFixture struct {
	srv     *edge.Server
	tun     tunnelFixture
	dir     string
	config  string // the config file's path
	credRel string // the credentials file, relative to dir
}

func newReloadFixture(t *testing.T) *reloadFixture {
	t.Helper()
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "reload", "reload.test")
	dir := t.TempDir()
	cred := &credentials.File{
		AccountTag:   "test",
		TunnelID:     tun.ID,
		TunnelSecret: tun.Secret,
		EdgeAddrs:    []string{srv.TunnelAddr().String()},
		EdgeCA:       string(srv.CAPEM()),
	}
	if err := cred.Save(filepath.Join(dir, "cred.json")); err != nil {
		t.Fatal(err)
	}
	return &reloadFixture{srv: srv, tun: tun, dir: dir, config: filepath.Join(dir, "config.yml"), credRel: filepath.Join(dir, "cred.json")}
}

// configText routes reload.test to service; extra goes at the top.
func (f *reloadFixture) configText(service, extra string) string {
	return fmt.Sprintf("%stunnel: %s\ncredentials-file: %s\ningress:\n  - hostname: reload.test\n    service: %s\n  - service: http_status:404\n",
		extra, f.tun.ID, f.credRel, service)
}

// write replaces the config the way editors do: a new file renamed over
// the old one.
func (f *reloadFixture) write(t *testing.T, content string) {
	t.Helper()
	tmp := f.config + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, f.config); err != nil {
		t.Fatal(err)
	}
}

// run starts `adit tunnel run --config` and waits for it to serve.
func (f *reloadFixture) run(t *testing.T) *proc {
	t.Helper()
	p := startAdit(t, []string{"ADIT_HOME=" + t.TempDir()}, "tunnel", "run", "--config", f.config,
		"--edge-server-name", "localhost", "--ha-connections", "2", "--grace-period", "5s")
	p.waitMatch(t, regexp.MustCompile(`connection registered`))
	return p
}

// waitCount waits until the output has at least n matches of re.
func (p *proc) waitCount(t testing.TB, re *regexp.Regexp, n int) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		s, changed := p.out.snapshot()
		if len(re.FindAllStringIndex(s, -1)) >= n {
			return
		}
		select {
		case <-changed:
		case <-p.done:
			t.Fatalf("adit exited (%v) before printing %s %d times; output:\n%s", p.err, re, n, p.out.String())
		case <-deadline:
			t.Fatalf("adit did not print %s %d times within 60s; output:\n%s", re, n, s)
		}
	}
}

var (
	reReloaded    = regexp.MustCompile(`msg="config reloaded"`)
	reNotReloaded = regexp.MustCompile(`msg="config not reloaded; keeping the rules in effect".*`)
)

// TestConfigReload: `adit tunnel run --config` picks up changes to the
// file without a restart, keeps serving the old rules when the new file is
// invalid (and says why), reloads on SIGHUP, and ignores restart-only keys
// with a warning.
func TestConfigReload(t *testing.T) {
	f := newReloadFixture(t)
	a, b := helloOrigin(t, "A"), helloOrigin(t, "B")
	f.write(t, f.configText(a.URL, ""))
	p := f.run(t)
	addr := f.srv.HTTPAddr().String()
	waitFor(t, "the tunnel to serve A", func() bool {
		code, body := getVia(addr, "reload.test")
		return code == 200 && body == "A"
	})
	expect := func(when, want string) {
		t.Helper()
		if code, body := getVia(addr, "reload.test"); code != 200 || body != want {
			t.Fatalf("%s: got %d %q, want 200 %q", when, code, body, want)
		}
	}

	// The file changes: the very next request goes to B.
	f.write(t, f.configText(b.URL, ""))
	p.waitCount(t, reReloaded, 1)
	expect("after the change to B", "B")
	if out := p.out.String(); !regexp.MustCompile(`msg="config reloaded".* rules=2 trigger=file`).MatchString(out) {
		t.Errorf("reload log lacks the rule count and trigger:\n%s", out)
	}

	// An invalid file: still B, and the log says why.
	f.write(t, strings.Replace(f.configText(a.URL, ""), "service: http_status:404", "servce: http_status:404", 1))
	m := p.waitMatch(t, reNotReloaded)
	if !strings.Contains(m[0], `unknown key \"servce\"`) || !strings.Contains(m[0], "trigger=file") {
		t.Errorf("log line does not say why the config was not reloaded: %s", m[0])
	}
	expect("after an invalid file", "B")

	// SIGHUP re-reads the file: still invalid, so still B.
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitMatch(t, regexp.MustCompile(`msg="config not reloaded; keeping the rules in effect".*trigger=signal`))
	expect("after SIGHUP with an invalid file", "B")

	// Fixed: A again; then SIGHUP reloads the unchanged file.
	f.write(t, f.configText(a.URL, ""))
	p.waitCount(t, reReloaded, 2)
	expect("after fixing the file", "A")
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitMatch(t, regexp.MustCompile(`msg="config reloaded".*trigger=signal`))
	expect("after SIGHUP", "A")

	// A restart-only key: a warning, and the ingress part still applies.
	f.write(t, f.configText(b.URL, "loglevel: debug\n"))
	p.waitCount(t, reReloaded, 4)
	p.waitMatch(t, regexp.MustCompile(`config change needs a restart; ignored until then" .*keys=loglevel`))
	expect("after a change with a restart-only key", "B")

	select {
	case <-p.done:
		t.Fatalf("the connector exited: %v", p.err)
	default:
	}
}

// TestConfigReloadUnderLoad: 20 clients send requests without pause while
// the config flips between two origins several times; not one request
// fails, and each flip takes effect.
func TestConfigReloadUnderLoad(t *testing.T) {
	f := newReloadFixture(t)
	a, b := helloOrigin(t, "A"), helloOrigin(t, "B")
	f.write(t, f.configText(a.URL, ""))
	p := f.run(t)
	addr := f.srv.HTTPAddr().String()
	waitFor(t, "the tunnel to serve A", func() bool {
		code, body := getVia(addr, "reload.test")
		return code == 200 && body == "A"
	})

	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		requests atomic.Int64
		seen     [2]atomic.Int64 // responses from A, B
		mu       sync.Mutex
		failures []string
	)
	for range 20 {
		wg.Go(func() {
			for !stop.Load() {
				code, body := getVia(addr, "reload.test")
				requests.Add(1)
				switch {
				case code == 200 && body == "A":
					seen[0].Add(1)
				case code == 200 && body == "B":
					seen[1].Add(1)
				default:
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%d %q", code, body))
					mu.Unlock()
				}
			}
		})
	}

	const flips = 6
	for i := range flips {
		target, idx := b.URL, 1
		if i%2 == 1 {
			target, idx = a.URL, 0
		}
		f.write(t, f.configText(target, ""))
		p.waitCount(t, reReloaded, i+1)
		// The workers see the new origin: requests flow across the reload.
		before := seen[idx].Load()
		waitFor(t, fmt.Sprintf("flip %d to reach the workers", i+1), func() bool { return seen[idx].Load() > before })
	}
	stop.Store(true)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed across %d reloads, want 0; first: %s", len(failures), requests.Load(), flips, failures[0])
	}
	t.Logf("%d requests across %d reloads (A %d, B %d)", requests.Load(), flips, seen[0].Load(), seen[1].Load())
}
