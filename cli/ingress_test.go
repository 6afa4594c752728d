package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adit-dev/adit/ingress"
)

// runMain runs the command line in-process with its own --home.
func runMain(t *testing.T, home string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), Program{}, append([]string{"--home", home}, args...), &out, &errOut)
	return out.String(), errOut.String(), code
}

// TestIngressValidateCorpus runs `tunnel ingress validate --config` over
// the ingress package's corpus: every good config passes, every bad one
// fails with the substring on its "# want: " first line.
func TestIngressValidateCorpus(t *testing.T) {
	t.Setenv("HOME", t.TempDir()) // no ~/.cloudflared of the machine's user
	good, _ := filepath.Glob("../ingress/testdata/good/*.yml")
	bad, _ := filepath.Glob("../ingress/testdata/bad/*.yml")
	if len(good) == 0 || len(bad) == 0 {
		t.Fatalf("corpus not found: %d good, %d bad files", len(good), len(bad))
	}
	for _, file := range good {
		t.Run("good/"+filepath.Base(file), func(t *testing.T) {
			out, errOut, code := runMain(t, t.TempDir(), "tunnel", "ingress", "validate", "--config", file)
			if code != 0 {
				t.Fatalf("exit %d, want 0; stderr: %s", code, errOut)
			}
			if want := "Validating rules from " + file + "\nOK\n"; out != want {
				t.Errorf("stdout: got %q, want %q", out, want)
			}
		})
	}
	for _, file := range bad {
		t.Run("bad/"+filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("first line %q is not \"# want: <error substring>\"", first)
			}
			out, errOut, code := runMain(t, t.TempDir(), "tunnel", "ingress", "validate", "--config", file)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if strings.Contains(out, "OK") {
				t.Errorf("stdout says OK for a bad config: %q", out)
			}
			if !strings.HasPrefix(errOut, "adit: validation failed: ingress: ") || !strings.Contains(errOut, want) {
				t.Errorf("stderr: got %q\nwant \"adit: validation failed: ingress: …%s…\"", errOut, want)
			}
			if strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("stderr is not one line: %q", errOut)
			}
		})
	}
}

func TestIngressRule(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	paths := "../ingress/testdata/good/paths.yml"
	wildcard := "../ingress/testdata/good/wildcard.yml"
	tests := []struct {
		name   string
		config string
		url    string
		want   []string // each must appear in stdout, in this order
	}{
		{
			name: "exact hostname and path", config: paths, url: "https://static.example.com/img/a.png",
			want: []string{"Using rules from " + paths, "Matched rule #1\n", "\thostname: static.example.com\n", "\tpath: \\.(jpg|png|css|js)$\n", "\tservice: https://localhost:8001\n",
				`Why: the hostname "static.example.com" is "static.example.com", and the path "/img/a.png" matches the regexp \.(jpg|png|css|js)$.`},
		},
		{
			name: "earlier rules' paths miss", config: paths, url: "static.example.com/index.html",
			want: []string{"Matched rule #3\n", "\tservice: http://localhost:8000\n", "it has no path, so every path matches",
				"Rules before it:\n", `#1 static.example.com path \.(jpg|png|css|js)$: the hostname matches, but the path "/index.html" does not match`,
				`#2 static.example.com path ^/api/.*$: the hostname matches, but the path "/index.html" does not match`},
		},
		{
			name: "path rule on every hostname", config: paths, url: "http://other.example.com:8080/healthz",
			want: []string{"Matched rule #4\n", "\tpath: ^/healthz$\n", "\tservice: http_status:200\n", "it matches every hostname",
				`#1 static.example.com path \.(jpg|png|css|js)$: the hostname "other.example.com" is not "static.example.com"`},
		},
		{
			name: "catch-all", config: paths, url: "https://nowhere.test",
			want: []string{"Matched rule #5\n", "\tservice: http_status:404\n", "the catch-all", "#4 * path ^/healthz$: the hostname matches, but the path \"/\" does not match"},
		},
		{
			name: "wildcard", config: wildcard, url: "https://a.b.example.com/",
			want: []string{"Matched rule #2\n", "\thostname: *.example.com\n", `the hostname "a.b.example.com" is under the wildcard "*.example.com"`,
				`#1 www.example.com: the hostname "a.b.example.com" is not "www.example.com"`},
		},
		{
			name: "wildcard does not match its parent", config: wildcard, url: "https://apps.example.org/",
			want: []string{"Matched rule #4\n", "\thostname: *\n", `#3 *.apps.example.org: the hostname "apps.example.org" is not under "*.apps.example.org"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runMain(t, t.TempDir(), "tunnel", "ingress", "rule", "--config", tt.config, tt.url)
			if code != 0 {
				t.Fatalf("exit %d, want 0; stderr: %s", code, errOut)
			}
			rest := out
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("stdout lacks %q (in order); got:\n%s", w, out)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestIngressRuleErrors(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", t.TempDir())
	cfg := filepath.Join(t.TempDir(), "c.yml")
	os.WriteFile(cfg, []byte("ingress:\n  - service: http_status:404\n"), 0o600)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no URL", []string{"--config", cfg}, "adit: tunnel ingress rule: want a URL, got 0 argument(s)\n"},
		{"no host", []string{"--config", cfg, "https:///path"}, "adit: ingress rule: \"https:///path\" has no hostname; want a URL like https://app.example.com/path\n"},
		{"bad URL", []string{"--config", cfg, "https://a b/"}, "adit: ingress rule: \"https://a b/\" is not a URL: invalid character \" \" in host name\n"},
		{"no config", []string{"https://a.test/"}, "adit: ingress rule: no config file: pass --config FILE, or create one of " + filepath.Join(home, "config.yml")},
		{"invalid config", []string{"--config", "../ingress/testdata/bad/no-catchall.yml", "https://a.test/"}, "the last rule must match every request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := runMain(t, home, append([]string{"tunnel", "ingress", "rule"}, tt.args...)...)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr: got %q, want it to contain %q", errOut, tt.want)
			}
		})
	}
}

// TestConfigSearch: without --config, $ADIT_HOME (--home) comes first,
// then ~/.cloudflared; config.yaml is found too.
func TestConfigSearch(t *testing.T) {
	home, user := t.TempDir(), t.TempDir()
	t.Setenv("HOME", user)
	write := func(path, service string) {
		t.Helper()
		os.MkdirAll(filepath.Dir(path), 0o700)
		if err := os.WriteFile(path, []byte("ingress:\n  - service: "+service+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rule := func() string {
		t.Helper()
		out, errOut, code := runMain(t, home, "tunnel", "ingress", "rule", "https://x.test/")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		return out
	}
	if _, errOut, code := runMain(t, home, "tunnel", "ingress", "validate"); code != 1 || !strings.Contains(errOut, filepath.Join(user, ".cloudflared", "config.yml")) {
		t.Errorf("with no config: exit %d, stderr %q; want 1 and the places searched", code, errOut)
	}

	cloudflared := filepath.Join(user, ".cloudflared", "config.yaml")
	write(cloudflared, "http_status:201")
	if out := rule(); !strings.Contains(out, "Using rules from "+cloudflared) || !strings.Contains(out, "http_status:201") {
		t.Errorf("~/.cloudflared/config.yaml not used:\n%s", out)
	}
	own := filepath.Join(home, "config.yml")
	write(own, "http_status:202")
	if out := rule(); !strings.Contains(out, "Using rules from "+own) || !strings.Contains(out, "http_status:202") {
		t.Errorf("$ADIT_HOME/config.yml not preferred:\n%s", out)
	}
	if got := findConfig(home); got != own {
		t.Errorf("findConfig: got %q, want %q", got, own)
	}
	if got, want := configCandidates(home)[len(configCandidates(home))-2], "/etc/cloudflared/config.yml"; got != want {
		t.Errorf("last directory searched: got %q, want %q", got, want)
	}
}

// FuzzParseRuleURL: whatever `ingress rule` accepts has a host and a path
// starting with "/", and matching it against a catch-all never fails.
func FuzzParseRuleURL(f *testing.F) {
	for _, s := range []string{"https://app.example.com/a/b", "app.example.com", "http://[::1]:8080/x?y#z", "https://h/%20", "a:b", "//x", "https:///p"} {
		f.Add(s)
	}
	cfg, err := ingress.Parse([]byte("ingress:\n  - hostname: '*.example.com'\n    path: ^/a\n    service: http_status:200\n  - service: http_status:404\n"))
	if err != nil {
		f.Fatal(err)
	}
	ing, err := ingress.New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		host, path, err := parseRuleURL(raw)
		if err != nil {
			return
		}
		if host == "" || !strings.HasPrefix(path, "/") {
			t.Errorf("parseRuleURL(%q) = %q, %q; want a host and a path starting with /", raw, host, path)
		}
		var out bytes.Buffer
		explainMatch(&out, ing, host, path)
		if !strings.HasPrefix(out.String(), "Matched rule #") {
			t.Errorf("explainMatch for %q: %q", raw, out.String())
		}
	})
}

func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main(t.Context(), Program{}, []string{"version"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if got := out.String(); !strings.HasPrefix(got, "adit ") || !strings.Contains(got, "adit/1") {
		t.Errorf("version printed %q", got)
	}
}
