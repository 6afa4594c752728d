package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/adit-dev/adit/credentials"
)

func testCreds(t *testing.T) *credentials.File {
	t.Helper()
	return &credentials.File{
		TunnelID:     uuid.NewString(),
		TunnelSecret: bytes.Repeat([]byte{7}, credentials.MinSecretLen),
		EdgeAddrs:    []string{"edge.example:7844"},
	}
}

// TestServiceInstall runs `service install` and `service uninstall` as a
// user would (into --unit-dir and --config-dir, so nothing is enabled).
func TestServiceInstall(t *testing.T) {
	creds := testCreds(t)
	tok, err := creds.Token()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	tokenFile := filepath.Join(home, "tok")
	if err := os.WriteFile(tokenFile, []byte(tok+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	credsFile := filepath.Join(home, creds.TunnelID+".json")
	if err := creds.Save(credsFile); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(home, "config.yml")
	if err := os.WriteFile(config, []byte("tunnel: "+creds.TunnelID+"\ningress:\n  - service: http://localhost:8000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badConfig := filepath.Join(home, "bad.yml")
	if err := os.WriteFile(badConfig, []byte("tunnel: x\nedge-bind-address: 10.0.0.1\ningress:\n  - service: http://localhost:8000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		env      string // ADIT_TUNNEL_TOKEN
		wantCode int
		want     []string // in stdout (or stderr when failing)
		unit     []string // in the unit
	}{
		{"token file", []string{"--token-file", tokenFile}, "", 0,
			[]string{"wrote UNITDIR/adit.service", "wrote CONFDIR/token", "to enable and start it: systemctl daemon-reload; systemctl enable --now adit.service"},
			[]string{"tunnel run --token-file %d/token\n", "LoadCredential=token:CONFDIR/token\n"}},
		{"token env", nil, tok, 0, []string{"wrote CONFDIR/token"}, []string{"--token-file %d/token"}},
		{"config, credentials found by tunnel", []string{"--config", config, "--user", "daemon"}, "", 0,
			[]string{"wrote CONFDIR/config.yml", "wrote CONFDIR/credentials.json"},
			[]string{"--credentials-file %d/credentials.json --config CONFDIR/config.yml\n", "User=daemon\n", "ExecReload="}},
		{"launchd", []string{"--token-file", tokenFile, "--goos", "darwin"}, "", 0,
			[]string{"wrote UNITDIR/dev.adit.connector.plist", "launchctl load -w UNITDIR/dev.adit.connector.plist"}, nil},
		{"config found", nil, "", 0, []string{"wrote CONFDIR/config.yml"}, []string{"--config CONFDIR/config.yml"}},
		{"nothing", []string{"--home", t.TempDir()}, "", 1, []string{"adit: service install: want --token-file FILE (or ADIT_TUNNEL_TOKEN) or --config FILE"}, nil},
		{"bad token", []string{"--token-file", config}, "", 1, []string{"adit: service install: "}, nil},
		{"refused config key", []string{"--config", badConfig}, "", 1, []string{"edge-bind-address: not implemented"}, nil},
		{"no such user", []string{"--token-file", tokenFile, "--user", "no-such-adit-user"}, "", 1, []string{`user "no-such-adit-user"`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			unitDir, confDir := t.TempDir(), t.TempDir()
			t.Setenv("ADIT_TUNNEL_TOKEN", tt.env)
			args := append([]string{"--home", home, "service", "install", "--unit-dir", unitDir, "--config-dir", confDir}, tt.args...)
			var out, errOut bytes.Buffer
			code := Main(t.Context(), Program{}, args, &out, &errOut)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tt.wantCode, out.String(), errOut.String())
			}
			got := out.String() + errOut.String()
			r := strings.NewReplacer("UNITDIR", unitDir, "CONFDIR", confDir)
			for _, w := range tt.want {
				if w = r.Replace(w); !strings.Contains(got, w) {
					t.Errorf("output %q lacks %q", got, w)
				}
			}
			if code != 0 {
				return
			}
			if strings.Contains(got, tok) {
				t.Errorf("output shows the token: %q", got)
			}
			unit, _ := os.ReadFile(filepath.Join(unitDir, "adit.service"))
			if strings.Contains(string(unit), tok) {
				t.Errorf("the unit holds the token:\n%s", unit)
			}
			for _, w := range tt.unit {
				if w = r.Replace(w); !strings.Contains(string(unit), w) {
					t.Errorf("unit lacks %q:\n%s", w, unit)
				}
			}
			out.Reset()
			if code := Main(t.Context(), Program{}, []string{"service", "uninstall", "--unit-dir", unitDir, "--config-dir", confDir, "--goos", map[bool]string{true: "darwin", false: "linux"}[tt.name == "launchd"]}, &out, &errOut); code != 0 {
				t.Fatalf("uninstall: exit %d: %s", code, errOut.String())
			}
			if entries, _ := os.ReadDir(unitDir); len(entries) != 0 {
				t.Errorf("uninstall left %v in the unit dir; output %q", entries, out.String())
			}
		})
	}
}
