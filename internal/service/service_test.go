package service

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const testToken = "eyJhIjoiYWNjb3VudCIsInQiOiJ0dW5uZWwiLCJzIjoic2VjcmV0In0="

// binary is an executable file for ExecStart (systemd-analyze verify
// checks that it exists).
func binary(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func writeTemp(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// verify runs systemd-analyze verify on unit, or skips saying why.
func verify(t *testing.T, unit string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("systemd-analyze is not installed (Debian: apt-get install systemd; .ci/run installs it): the unit is not verified")
		return
	}
	out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		b, _ := os.ReadFile(unit)
		t.Fatalf("systemd-analyze verify %s: %v\n%s\nunit:\n%s", unit, err, out, b)
	}
}

func TestInstallSystemd(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		want    []string // lines the unit holds
		notWant []string
	}{
		{
			name: "token",
			cfg:  Config{Token: testToken},
			want: []string{
				"ExecStart=BIN tunnel run --token-file %d/token",
				"LoadCredential=token:DIR/token",
				"Restart=on-failure",
				"NoNewPrivileges=yes",
				"ProtectSystem=full",
			},
			notWant: []string{"User=", "ExecReload=", testToken},
		},
		{
			name: "token, user",
			cfg:  Config{Token: testToken, User: "daemon"},
			want: []string{"User=daemon", "LoadCredential=token:DIR/token"},
		},
		{
			name: "config and credentials",
			cfg:  Config{ConfigFile: "CONFIG", CredentialsFile: "CREDS"},
			want: []string{
				"ExecStart=BIN tunnel run --credentials-file %d/credentials.json --config DIR/config.yml",
				"LoadCredential=credentials.json:DIR/credentials.json",
				"ExecReload=/bin/kill -HUP $MAINPID",
				"Type=notify",
			},
			notWant: []string{"--token-file"},
		},
		{
			name: "token and config",
			cfg:  Config{Token: testToken, ConfigFile: "CONFIG", CredentialsFile: "CREDS"},
			want: []string{"ExecStart=BIN tunnel run --token-file %d/token --config DIR/config.yml"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if cfg.User != "" {
				if _, err := user.Lookup(cfg.User); err != nil {
					t.Skipf("no user %s here: %v", cfg.User, err)
				}
			}
			cfg.OS = "linux"
			cfg.Binary = binary(t)
			cfg.UnitDir = t.TempDir()
			cfg.Dir = filepath.Join(t.TempDir(), "etc adit%") // a space and a specifier to escape
			if cfg.ConfigFile != "" {
				cfg.ConfigFile = writeTemp(t, "config.yml", "ingress:\n  - service: http_status:404\n")
			}
			if cfg.CredentialsFile != "" {
				cfg.CredentialsFile = writeTemp(t, "creds.json", `{"TunnelID":"x"}`)
			}
			res, err := Install(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			unit := filepath.Join(cfg.UnitDir, UnitName)
			if res.Unit != unit || res.Written[0] != unit {
				t.Errorf("Result = %+v, want the unit %s first", res, unit)
			}
			if want := []string{"systemctl daemon-reload", "systemctl enable --now adit.service"}; !slices.Equal(res.Next, want) {
				t.Errorf("Next = %q, want %q", res.Next, want)
			}
			b, err := os.ReadFile(unit)
			if err != nil {
				t.Fatal(err)
			}
			text := string(b)
			lines := strings.Split(text, "\n")
			esc := strings.ReplaceAll(cfg.Dir, "%", "%%")
			for _, w := range tt.want {
				w = strings.ReplaceAll(w, "BIN", cfg.Binary)
				if strings.HasPrefix(w, "ExecStart=") {
					w = strings.ReplaceAll(w, "DIR/config.yml", `"`+esc+`/config.yml"`)
				}
				w = strings.ReplaceAll(w, "DIR", esc)
				if !slices.Contains(lines, w) {
					t.Errorf("unit lacks %q:\n%s", w, text)
				}
			}
			for _, nw := range tt.notWant {
				if strings.Contains(text, nw) {
					t.Errorf("unit holds %q:\n%s", nw, text)
				}
			}
			if cfg.Token != "" {
				checkFile(t, filepath.Join(cfg.Dir, TokenName), 0o600, testToken+"\n")
			}
			if cfg.Token == "" && cfg.CredentialsFile != "" {
				checkFile(t, filepath.Join(cfg.Dir, CredentialsName), 0o600, `{"TunnelID":"x"}`)
			}
			if cfg.ConfigFile != "" {
				checkFile(t, filepath.Join(cfg.Dir, ConfigName), 0o644, "ingress:\n  - service: http_status:404\n")
			}
			verify(t, unit)

			res, err = Uninstall(context.Background(), Config{OS: "linux", UnitDir: cfg.UnitDir, Dir: cfg.Dir})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{unit, filepath.Join(cfg.Dir, TokenName), filepath.Join(cfg.Dir, CredentialsName)} {
				if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s after uninstall: %v, want it gone", p, err)
				}
			}
			if cfg.ConfigFile != "" && !slices.Equal(res.Kept, []string{filepath.Join(cfg.Dir, ConfigName)}) {
				t.Errorf("Kept = %q, want the config", res.Kept)
			}
			if want := []string{"systemctl disable --now adit.service", "systemctl daemon-reload"}; !slices.Equal(res.Next, want) {
				t.Errorf("uninstall Next = %q, want %q", res.Next, want)
			}
		})
	}
}

func checkFile(t *testing.T, p string, mode os.FileMode, body string) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), mode)
	}
	b, _ := os.ReadFile(p)
	if string(b) != body {
		t.Errorf("%s holds %q, want %q", p, b, body)
	}
}

func TestInstallManage(t *testing.T) {
	var ran []string
	cfg := Config{
		OS: "linux", Binary: binary(t), Token: testToken, UnitDir: t.TempDir(), Dir: t.TempDir(), Manage: true,
		Run: func(_ context.Context, name string, args ...string) error {
			ran = append(ran, name+" "+strings.Join(args, " "))
			return nil
		},
	}
	if _, err := Install(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := Uninstall(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	want := []string{"systemctl daemon-reload", "systemctl enable --now adit.service", "systemctl disable --now adit.service", "systemctl daemon-reload"}
	if !slices.Equal(ran, want) {
		t.Errorf("ran %q, want %q", ran, want)
	}
}

func TestInstallErrors(t *testing.T) {
	bin := binary(t)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no token or config", Config{Binary: bin}, "want a token or a config file"},
		{"config without credentials", Config{Binary: bin, ConfigFile: "c.yml"}, "names no credentials-file"},
		{"relative binary", Config{Binary: "adit", Token: testToken}, "not an absolute path"},
		{"unknown user", Config{Binary: bin, Token: testToken, User: "no-such-user-adit"}, `user "no-such-user-adit"`},
		{"nobody", Config{Binary: bin, Token: testToken, User: "nobody"}, "create a user of its own"},
		{"bad user", Config{Binary: bin, Token: testToken, User: "a b"}, "not an account name"},
		{"windows", Config{OS: "windows", Binary: bin, Token: testToken}, "no service manager"},
		{"newline", Config{Binary: bin + "\nx", Token: testToken}, "control character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if cfg.OS == "" {
				cfg.OS = "linux"
			}
			cfg.UnitDir, cfg.Dir = t.TempDir(), t.TempDir()
			_, err := Install(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Install: %v, want an error with %q", err, tt.want)
			}
		})
	}
	if _, err := Uninstall(context.Background(), Config{OS: "linux", UnitDir: t.TempDir(), Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("Uninstall of nothing: %v, want not installed", err)
	}
}

// plist is a launchd property list's top dictionary, decoded by
// encoding/xml (plutil -lint checks it too where it exists).
type plistDict struct {
	Items []plistItem `xml:",any"`
}

type plistItem struct {
	XMLName xml.Name
	Text    string      `xml:",chardata"`
	Items   []plistItem `xml:",any"`
}

func TestInstallLaunchd(t *testing.T) {
	// The token file is made the service user's: only root may give it.
	owner := ""
	if _, err := user.Lookup("daemon"); err == nil && os.Geteuid() == 0 {
		owner = "daemon"
	}
	cfg := Config{
		OS: "darwin", Binary: "/usr/local/bin/adit", Token: testToken, User: owner,
		UnitDir: t.TempDir(), Dir: filepath.Join(t.TempDir(), "a&b"),
	}
	res, err := Install(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	plist := filepath.Join(cfg.UnitDir, LaunchdLabel+".plist")
	if res.Unit != plist || !slices.Equal(res.Next, []string{"launchctl load -w " + plist}) {
		t.Errorf("Result = %+v", res)
	}
	b, err := os.ReadFile(plist)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), testToken) {
		t.Errorf("the plist holds the token:\n%s", b)
	}
	if p, err := exec.LookPath("plutil"); err == nil {
		if out, err := exec.Command(p, "-lint", plist).CombinedOutput(); err != nil {
			t.Fatalf("plutil -lint: %v\n%s", err, out)
		}
	} else {
		t.Log("plutil is not installed (macOS only): the plist is checked by parsing it as XML")
	}
	d := xml.NewDecoder(strings.NewReader(string(b)))
	d.Strict = true
	var top struct {
		XMLName xml.Name  `xml:"plist"`
		Version string    `xml:"version,attr"`
		Dict    plistDict `xml:"dict"`
	}
	if err := d.Decode(&top); err != nil {
		t.Fatalf("plist is not XML: %v\n%s", err, b)
	}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if cd, ok := tok.(xml.CharData); err != nil || !ok || strings.TrimSpace(string(cd)) != "" {
			t.Fatalf("plist has more after </plist>: %v %v", tok, err)
		}
	}
	got := map[string]plistItem{}
	items := top.Dict.Items
	for i := 0; i+1 < len(items); i += 2 {
		if items[i].XMLName.Local != "key" {
			t.Fatalf("item %d is <%s>, want <key>", i, items[i].XMLName.Local)
		}
		got[items[i].Text] = items[i+1]
	}
	if got["Label"].Text != LaunchdLabel || got["UserName"].Text != owner || got["RunAtLoad"].XMLName.Local != "true" {
		t.Errorf("plist: %+v", got)
	}
	var args []string
	for _, a := range got["ProgramArguments"].Items {
		args = append(args, a.Text)
	}
	tokenFile := filepath.Join(cfg.Dir, TokenName)
	if want := []string{cfg.Binary, "tunnel", "run", "--token-file", tokenFile}; !slices.Equal(args, want) {
		t.Errorf("ProgramArguments = %q, want %q", args, want)
	}
	ka := got["KeepAlive"].Items
	if len(ka) != 2 || ka[0].Text != "SuccessfulExit" || ka[1].XMLName.Local != "false" {
		t.Errorf("KeepAlive = %+v, want SuccessfulExit false", ka)
	}
	checkFile(t, tokenFile, 0o600, testToken+"\n")
	fi, _ := os.Stat(tokenFile)
	if uid, err := uid(owner); err == nil && !ownedBy(fi, uid) {
		t.Errorf("%s is not owned by daemon (uid %d)", tokenFile, uid)
	}
}
