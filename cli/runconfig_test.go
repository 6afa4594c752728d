package cli

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/adit-dev/adit/ingress"
)

// TestRunKeysCoverConfig: every top-level key ingress.Config reads is used,
// a no-op or refused by tunnel run; a key added there must be classified.
func TestRunKeysCoverConfig(t *testing.T) {
	ty := reflect.TypeFor[ingress.Config]()
	for i := range ty.NumField() {
		key, _, _ := strings.Cut(ty.Field(i).Tag.Get("yaml"), ",")
		if _, ok := runKeys[key]; !ok {
			t.Errorf("config key %q has no entry in runKeys", key)
		}
	}
	if len(runKeys) != ty.NumField() {
		t.Errorf("runKeys has %d entries for %d config keys", len(runKeys), ty.NumField())
	}
}

// TestRunRefusesUnimplementedSettings: tunnel run refuses, by name and with
// the reason, a config setting adit does not implement, before it does
// anything else.
func TestRunRefusesUnimplementedSettings(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	tests := []struct{ setting, want string }{
		{"retries: 3", "retries: not implemented: adit retries a lost edge connection until it is stopped"},
		{"edge-ip-version: \"6\"", "edge-ip-version: not implemented"},
		{"edge-bind-address: 192.0.2.1", "edge-bind-address: not implemented"},
		{"tag: [env=prod]", "tag: not implemented: connectors report no tags"},
		{"transport-loglevel: warn", "transport-loglevel: not implemented"},
		{"log-directory: /var/log", "log-directory: not implemented"},
		{"post-quantum: true", "post-quantum: not implemented"},
		{"warp-routing: {enabled: true}", "warp-routing: not implemented: adit does not route private networks"},
	}
	for _, tt := range tests {
		t.Run(tt.setting, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "config.yml")
			body := tt.setting + "\ntunnel: 6ff42ae2-765d-4adf-8112-31c55c1551ef\ningress:\n  - service: http_status:404\n"
			if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, errOut, code := runMain(t, t.TempDir(), "tunnel", "run", "--config", cfg)
			want := "adit: tunnel run: " + cfg + ": " + tt.want
			if code != 1 || !strings.HasPrefix(errOut, want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, want)
			}
		})
	}
}

// TestApplyRunConfig: the file's settings fill the flags the command line
// did not set; those it set win.
func TestApplyRunConfig(t *testing.T) {
	cfg, err := ingress.Parse([]byte(`
protocol: http2
ha-connections: 2
grace-period: 5s
metrics: 127.0.0.1:0
loglevel: debug
logfile: /tmp/x.log
pidfile: /tmp/x.pid
no-autoupdate: true
warp-routing: {enabled: false}
ingress: [{service: http_status:404}]
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		flags   []string // given on the command line
		want    runFlags
		wantLvl string
		notes   int // the no-autoupdate note, and http2's when the file's protocol is used
	}{
		{"file only", nil,
			runFlags{protocol: "websocket", haConnections: 2, gracePeriod: 5 * time.Second, metricsAddr: "127.0.0.1:0", logFile: "/tmp/x.log", pidFile: "/tmp/x.pid"}, "debug", 2},
		{"flags win", []string{"protocol", "ha-connections", "grace-period", "metrics", "loglevel", "logfile", "pidfile"},
			runFlags{protocol: "quic", haConnections: 4, gracePeriod: time.Second, metricsAddr: "", logFile: "", pidFile: ""}, "warn", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := &Env{LogLevel: "warn"}
			f := runFlags{protocol: "quic", haConnections: 4, gracePeriod: time.Second}
			f.set = func(name string) bool { return strings.Contains(" "+strings.Join(tt.flags, " ")+" ", " "+name+" ") }
			notes, err := applyRunConfig(g, &f, "config.yml", cfg)
			if err != nil {
				t.Fatal(err)
			}
			f.set = nil
			if !reflect.DeepEqual(f, tt.want) || g.LogLevel != tt.wantLvl {
				t.Errorf("got %+v loglevel %s\nwant %+v loglevel %s", f, g.LogLevel, tt.want, tt.wantLvl)
			}
			if len(notes) != tt.notes || !strings.Contains(strings.Join(notes, "\n"), "no-autoupdate changes nothing") {
				t.Errorf("notes: %q; want %d with the no-autoupdate one", notes, tt.notes)
			}
		})
	}
}
