package configwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/adit-dev/adit/ingress"
)

// configFor is a valid config routing app.test to port and everything else
// to a 404; extra is added at the top level.
func configFor(port int, extra string) string {
	return fmt.Sprintf("%singress:\n  - hostname: app.test\n    service: http://127.0.0.1:%d\n  - service: http_status:404\n", extra, port)
}

// event is what the callbacks saw, in order.
type event struct {
	reload *Reload
	err    error
}

type harness struct {
	t       *testing.T
	path    string
	watcher *Watcher
	events  chan event
	logs    *logBuffer

	mu       sync.Mutex
	applyErr error            // what Apply returns
	live     *ingress.Ingress // what Apply installed last
}

type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start writes a config routing app.test to port 1001 to a new file and
// runs a watcher on it until the test ends; then it checks that no
// goroutine is left.
func start(t *testing.T, poll bool) *harness {
	t.Helper()
	before := goleak.IgnoreCurrent()
	h := &harness{
		t:      t,
		path:   filepath.Join(t.TempDir(), "config.yml"),
		events: make(chan event, 64),
		logs:   &logBuffer{},
	}
	if err := os.WriteFile(h.path, []byte(configFor(1001, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	cur, err := ingress.Load(h.path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{
		Path:    h.path,
		Current: cur,
		Apply: func(ing *ingress.Ingress) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.applyErr != nil {
				return h.applyErr
			}
			h.live = ing
			return nil
		},
		OnReload:     func(r Reload) { h.events <- event{reload: &r} },
		OnError:      func(err error) { h.events <- event{err: err} },
		Poll:         poll,
		PollInterval: 5 * time.Millisecond,
		Debounce:     5 * time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: got %v, want nil", err)
		}
		goleak.VerifyNone(t, before)
		if t.Failed() {
			t.Logf("watcher log:\n%s", h.logs.String())
		}
	})
	h.watcher = w
	// Once a signal's reload arrives, Run is past its start-up check of
	// the file, which could otherwise see the test's first write half done.
	w.Reload()
	h.wantReload(1001, TriggerSignal)
	return h
}

// next waits for the next callback.
func (h *harness) next() event {
	h.t.Helper()
	select {
	case ev := <-h.events:
		return ev
	case <-time.After(10 * time.Second):
		h.t.Fatalf("no reload or error within 10s; log:\n%s", h.logs.String())
		return event{}
	}
}

// wantReload waits for the next callback and checks it is a reload that
// routes app.test to port.
func (h *harness) wantReload(port int, trigger Trigger) *Reload {
	h.t.Helper()
	ev := h.next()
	if ev.err != nil {
		h.t.Fatalf("got error %v, want a reload to port %d", ev.err, port)
	}
	r := ev.reload
	if r.Trigger != trigger {
		h.t.Errorf("trigger: got %q, want %q", r.Trigger, trigger)
	}
	_, rule := r.Ingress.Match("app.test", "/")
	want := fmt.Sprintf("http://127.0.0.1:%d", port)
	if rule == nil || rule.Service.String() != want {
		h.t.Fatalf("reloaded rules send app.test to %v, want %s", rule, want)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.live != r.Ingress {
		h.t.Errorf("Apply did not get the reloaded rules")
	}
	return r
}

func (h *harness) wantError(substr string) {
	h.t.Helper()
	ev := h.next()
	if ev.err == nil {
		h.t.Fatalf("got a reload (trigger %s), want an error containing %q", ev.reload.Trigger, substr)
	}
	if !strings.Contains(ev.err.Error(), substr) {
		h.t.Errorf("got error %q, want it to contain %q", ev.err, substr)
	}
}

// writeInPlace truncates and rewrites the file, as `echo >` does.
func (h *harness) writeInPlace(content string) {
	h.t.Helper()
	if err := os.WriteFile(h.path, []byte(content), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

// renameOver writes a temporary file and renames it over the config, as
// most editors and configuration tools do.
func (h *harness) renameOver(content string) {
	h.t.Helper()
	tmp := h.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, h.path); err != nil {
		h.t.Fatal(err)
	}
}

var modes = []struct {
	name string
	poll bool
}{
	{"notify", false},
	{"poll", true},
}

func TestReloads(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := start(t, m.poll)

			h.writeInPlace(configFor(1002, ""))
			h.wantReload(1002, TriggerFile)

			h.renameOver(configFor(1003, ""))
			h.wantReload(1003, TriggerFile)

			h.renameOver("ingress:\n  - hostname: app.test\n    service: htp://127.0.0.1:1\n  - service: http_status:404\n")
			h.wantError(`rule 1: service "htp://127.0.0.1:1": unknown scheme "htp"`)
			h.mu.Lock()
			if _, r := h.live.Match("app.test", "/"); r.Service.String() != "http://127.0.0.1:1003" {
				t.Errorf("after an invalid file the rules in effect send app.test to %s, want the previous http://127.0.0.1:1003", r.Service)
			}
			h.mu.Unlock()
			if log := h.logs.String(); !strings.Contains(log, "config not reloaded") || !strings.Contains(log, "unknown scheme") {
				t.Errorf("log does not say why the config was not reloaded:\n%s", log)
			}

			h.writeInPlace(configFor(1004, ""))
			h.wantReload(1004, TriggerFile)

			// A signal reloads even an unchanged file.
			h.watcher.Reload()
			h.wantReload(1004, TriggerSignal)

			// A restart-only change is not applied; the next ingress
			// change is, and says what still needs a restart.
			h.renameOver(configFor(1004, "tunnel: other\n"))
			h.renameOver(configFor(1005, "tunnel: other\n"))
			r := h.wantReload(1005, TriggerFile)
			if !slices.Equal(r.NeedRestart, []string{"tunnel"}) {
				t.Errorf("NeedRestart: got %q, want [tunnel]", r.NeedRestart)
			}
			if log := h.logs.String(); !strings.Contains(log, "needs a restart") {
				t.Errorf("log does not say the tunnel change needs a restart:\n%s", log)
			}

			// Apply failing keeps the old rules and reports why.
			h.mu.Lock()
			h.applyErr = errors.New("connector: no origin for you")
			h.mu.Unlock()
			h.renameOver(configFor(1006, ""))
			h.wantError("no origin for you")
		})
	}
}

// TestSymlinkSwap follows a Kubernetes ConfigMap volume: config.yml is a
// link to ..data/config.yml, and an update swaps the ..data link to a new
// directory.
func TestSymlinkSwap(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := start(t, m.poll)
			dir := filepath.Dir(h.path)
			// Build the layout in place of the plain file.
			version := func(n int, content string) {
				vdir := filepath.Join(dir, fmt.Sprintf("..v%d", n))
				if err := os.Mkdir(vdir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(vdir, "config.yml"), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				tmp := filepath.Join(dir, "..data_tmp")
				if err := os.Symlink(filepath.Base(vdir), tmp); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
					t.Fatal(err)
				}
			}
			version(1, configFor(2002, ""))
			link := h.path + ".link"
			if err := os.Symlink(filepath.Join("..data", "config.yml"), link); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(link, h.path); err != nil {
				t.Fatal(err)
			}
			h.wantReload(2002, TriggerFile)
			version(2, configFor(2003, ""))
			h.wantReload(2003, TriggerFile)
		})
	}
}

// TestChangeBeforeRun: a change between the caller's load and Run is
// applied when Run starts.
func TestChangeBeforeRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yml")
	os.WriteFile(path, []byte(configFor(3001, "")), 0o600)
	cur, err := ingress.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte(configFor(3002, "")), 0o600)
	got := make(chan Reload, 1)
	w, err := New(Config{Path: path, Current: cur, Apply: func(*ingress.Ingress) error { return nil },
		OnReload: func(r Reload) { got <- r }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case r := <-got:
		if _, rule := r.Ingress.Match("app.test", "/"); rule.Service.String() != "http://127.0.0.1:3002" {
			t.Errorf("got rules for %s, want http://127.0.0.1:3002", rule.Service)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the change made before Run was not applied")
	}
}

func TestNewChecksConfig(t *testing.T) {
	apply := func(*ingress.Ingress) error { return nil }
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no path", Config{Apply: apply}, "configwatch: no config file"},
		{"no apply", Config{Path: "x.yml"}, "configwatch: no Apply function"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || err.Error() != tt.want {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestRestartKeys(t *testing.T) {
	three := 3
	tests := []struct {
		name     string
		old, new string
		want     []string
	}{
		{"same", configFor(1, "tunnel: a\n"), configFor(1, "tunnel: a\n"), nil},
		{"ingress only", configFor(1, "tunnel: a\n"), configFor(2, "tunnel: a\n"), nil},
		{"originRequest only", configFor(1, ""), configFor(1, "originRequest:\n  connectTimeout: 5s\n"), nil},
		{"tunnel", configFor(1, "tunnel: a\n"), configFor(1, "tunnel: b\n"), []string{"tunnel"}},
		{"credentials and protocol", configFor(1, "credentials-file: a.json\n"), configFor(1, "credentials-file: b.json\nprotocol: quic\n"), []string{"credentials-file", "protocol"}},
		{"legacy url is live", "url: http://127.0.0.1:1\n", "url: http://127.0.0.1:2\n", nil},
		{"retries", configFor(1, ""), configFor(1, fmt.Sprintf("retries: %d\n", three)), []string{"retries"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, err := ingress.Parse([]byte(tt.old))
			if err != nil {
				t.Fatal(err)
			}
			nw, err := ingress.Parse([]byte(tt.new))
			if err != nil {
				t.Fatal(err)
			}
			if got := RestartKeys(old, nw); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if got := RestartKeys(nil, nil); got != nil {
		t.Errorf("RestartKeys(nil, nil): got %q, want none", got)
	}
}

// FuzzRestartKeys checks RestartKeys' invariants on parsed configs: a
// config differs from itself in nothing, the result is symmetric, and it
// never names a key that a reload applies.
func FuzzRestartKeys(f *testing.F) {
	f.Add(configFor(1, "tunnel: a\n"), configFor(2, "tunnel: b\n"))
	f.Add("url: http://x\nprotocol: quic\n", "hello-world: true\nloglevel: debug\n")
	f.Add("ha-connections: 2\ntag: [a=b]\n", "ha-connections: 3\nwarp-routing:\n  enabled: true\n")
	f.Fuzz(func(t *testing.T, a, b string) {
		ca, err := ingress.Parse([]byte(a))
		if err != nil {
			return
		}
		cb, err := ingress.Parse([]byte(b))
		if err != nil {
			return
		}
		if got := RestartKeys(ca, ca); got != nil {
			t.Errorf("RestartKeys(a, a) = %q, want none", got)
		}
		ab, ba := RestartKeys(ca, cb), RestartKeys(cb, ca)
		if !slices.Equal(ab, ba) {
			t.Errorf("RestartKeys(a, b) = %q but RestartKeys(b, a) = %q", ab, ba)
		}
		for _, k := range ab {
			switch k {
			case "ingress", "originRequest", "url", "hello-world":
				t.Errorf("RestartKeys names %q, which a reload applies", k)
			}
		}
	})
}
