package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/credentials"
	"github.com/adit-dev/adit/internal/pki"
	"github.com/adit-dev/adit/internal/store"
)

// testEdge is a real control API: an embedded etcd, controlserver.Service and
// controlserver.NewHandler behind an httptest TLS server whose certificate is
// signed by a pki CA.
type testEdge struct {
	t         *testing.T
	st        *store.Store
	svc       *controlserver.Service
	api       string // https://127.0.0.1:port
	caFile    string // the CA PEM, as --ca takes it
	caPEM     string
	tokenFile string // the admin API token, as --token-file takes it
	home      string // --home for every run
}

func newTestEdge(t *testing.T) *testEdge {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, store.Config{DataDir: filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bundle, _, err := pki.LoadOrCreate(filepath.Join(dir, "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := bundle.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	info := control.EdgeInfo{Node: "edge-a", TunnelAddrs: []string{"edge-a.test:7844"}, CAPEM: string(bundle.CACertPEM)}
	svc := controlserver.NewService(st.Client(), info, nil)
	tokenFile := filepath.Join(dir, "admin-token")
	if _, err := svc.EnsureAdminToken(ctx, tokenFile); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(controlserver.NewHandler(svc, nil))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are expected
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, bundle.CACertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return &testEdge{
		t: t, st: st, svc: svc, api: srv.URL,
		caFile: caFile, caPEM: string(bundle.CACertPEM), tokenFile: tokenFile,
		home: filepath.Join(dir, "home"),
	}
}

// run runs the command line with --home set and returns what it printed.
func (e *testEdge) run(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), Program{}, append([]string{"--home", e.home}, args...), &out, &errOut)
	return out.String(), errOut.String(), code
}

// ok runs the command line and fails the test unless it exits 0.
func (e *testEdge) ok(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("adit %s: exit %d, want 0; stderr: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// fails runs the command line and checks it exits 1 with one stderr line
// "adit: ..." containing want.
func (e *testEdge) fails(want string, args ...string) {
	e.t.Helper()
	out, errOut, code := e.run(args...)
	if code != 1 {
		e.t.Fatalf("adit %s: exit %d, want 1; stdout: %s", strings.Join(args, " "), code, out)
	}
	checkOneLine(e.t, errOut, want)
}

func checkOneLine(t *testing.T, stderr, want string) {
	t.Helper()
	if !strings.HasPrefix(stderr, "adit: ") || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr = %q, want one line starting \"adit: \"", stderr)
	}
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr = %q, want it to contain %q", stderr, want)
	}
}

// connect publishes n live connections of a tunnel, as an edge would; they
// vanish when the test ends.
func (e *testEdge) connect(tunnelID string, n int) {
	e.t.Helper()
	ctx := context.Background()
	p, err := controlserver.NewPresence(ctx, e.st.Client(), 0, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { p.Close() })
	for i := range n {
		c := control.Connection{
			ID:          "c0a8f000-0000-4000-8000-00000000000" + string(rune('0'+i)),
			TunnelID:    tunnelID,
			ConnectorID: "11111111-2222-4333-8444-555555555555",
			Index:       i,
			EdgeNode:    "edge-a",
			Protocol:    "quic",
			Version:     "test-1.0",
			OriginIP:    "192.0.2.7",
			Since:       time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		}
		if err := p.Add(ctx, c); err != nil {
			e.t.Fatal(err)
		}
	}
}

var createdRE = regexp.MustCompile(`Created tunnel (\S+) with id (\S+)`)

// create runs tunnel create and returns the new tunnel's ID.
func (e *testEdge) create(name string, extra ...string) string {
	e.t.Helper()
	out := e.ok(append([]string{"tunnel", "create", name}, extra...)...)
	m := createdRE.FindStringSubmatch(out)
	if m == nil || m[1] != name {
		e.t.Fatalf("tunnel create output = %q, want \"Created tunnel %s with id UUID\"", out, name)
	}
	return m[2]
}

func TestLogin(t *testing.T) {
	e := newTestEdge(t)
	loginFile := filepath.Join(e.home, credentials.LoginFile)

	t.Run("no --ca does not trust the edge CA", func(t *testing.T) {
		e.fails("pass --ca", "login", "--api", e.api, "--token-file", e.tokenFile)
		if _, err := os.Stat(loginFile); err == nil {
			t.Error("cert.json written after a failed login")
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad")
		os.WriteFile(bad, []byte("adit_nope\n"), 0o600)
		e.fails("refused the token", "login", "--api", e.api, "--token-file", bad, "--ca", e.caFile)
	})
	t.Run("no token", func(t *testing.T) {
		t.Setenv(apiTokenEnv, "")
		e.fails("no API token", "login", "--api", e.api, "--ca", e.caFile)
	})
	t.Run("token file", func(t *testing.T) {
		out := e.ok("login", "--api", e.api, "--token-file", e.tokenFile, "--ca", e.caFile)
		if !strings.Contains(out, loginFile) {
			t.Errorf("output = %q, want it to name %s", out, loginFile)
		}
		fi, err := os.Stat(loginFile)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("cert.json mode = %v, want 0600", fi.Mode().Perm())
		}
		l, err := credentials.LoadLogin(e.home)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := os.ReadFile(e.tokenFile)
		if l.API != e.api || l.Token != strings.TrimSpace(string(tok)) || l.CAPEM != e.caPEM {
			t.Errorf("cert.json = {%s, token match %v, CA match %v}, want the API, token and CA given",
				l.API, l.Token == strings.TrimSpace(string(tok)), l.CAPEM == e.caPEM)
		}
	})
	t.Run("token from env", func(t *testing.T) {
		tok, _ := os.ReadFile(e.tokenFile)
		t.Setenv(apiTokenEnv, strings.TrimSpace(string(tok)))
		e.ok("login", "--api", e.api, "--ca", e.caFile)
	})
}

func TestNotLoggedIn(t *testing.T) {
	var out, errOut bytes.Buffer
	home := t.TempDir()
	code := Main(context.Background(), Program{}, []string{"--home", home, "tunnel", "list"}, &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	checkOneLine(t, errOut.String(), "adit login")
}

func TestUnreachableAPI(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("adit_x\n"), 0o600)
	for _, args := range [][]string{
		{"login", "--api", "https://" + addr, "--token-file", tokenFile},
		{"tunnel", "list", "--api", "https://" + addr, "--token-file", tokenFile},
		{"tunnel", "create", "x", "--api", "https://" + addr, "--token-file", tokenFile},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := Main(context.Background(), Program{}, append([]string{"--home", t.TempDir()}, args...), &out, &errOut)
			if code != 1 {
				t.Fatalf("exit %d, want 1", code)
			}
			checkOneLine(t, errOut.String(), addr)
			if strings.Contains(errOut.String(), "goroutine") || strings.Contains(errOut.String(), "Usage:") {
				t.Errorf("stderr = %q, want no stack trace or usage", errOut.String())
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"bogus"}, `unknown command "bogus"`},
		{"unknown tunnel command", []string{"tunnel", "bogus"}, `unknown command "bogus"`},
		{"unknown flag", []string{"tunnel", "list", "--bogus"}, "tunnel list: unknown flag: --bogus"},
		{"missing argument", []string{"tunnel", "info"}, "tunnel info: want a tunnel NAME or UUID"},
		{"bad loglevel", []string{"--loglevel", "loud", "tunnel", "list"}, `--loglevel "loud"`},
		{"bad output", []string{"tunnel", "list", "-o", "xml"}, `--output "xml"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := Main(context.Background(), Program{}, append([]string{"--home", t.TempDir()}, tc.args...), &out, &errOut)
			if code != 1 {
				t.Fatalf("exit %d, want 1", code)
			}
			checkOneLine(t, errOut.String(), tc.want)
		})
	}
	t.Run("help exits 0", func(t *testing.T) {
		var out, errOut bytes.Buffer
		if code := Main(context.Background(), Program{}, []string{"tunnel", "--help"}, &out, &errOut); code != 0 {
			t.Fatalf("exit %d, want 0", code)
		}
		if !strings.Contains(out.String(), "create") {
			t.Errorf("help = %q, want it to list create", out.String())
		}
	})
}

func TestTunnelCommands(t *testing.T) {
	e := newTestEdge(t)
	e.ok("login", "--api", e.api, "--token-file", e.tokenFile, "--ca", e.caFile)
	ctx := context.Background()

	var webID string
	t.Run("create", func(t *testing.T) {
		out := e.ok("tunnel", "create", "web")
		m := createdRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("output = %q, want \"Created tunnel web with id UUID\"", out)
		}
		webID = m[2]
		path := credentials.CredentialsPath(e.home, webID)
		if !strings.Contains(out, "Tunnel credentials written to "+path+". Keep this file secret.") {
			t.Errorf("output = %q, want it to say where the credentials are", out)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("credentials mode = %v, want 0600", fi.Mode().Perm())
		}
		f, err := credentials.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if f.TunnelID != webID || f.TunnelName != "web" || len(f.TunnelSecret) != 32 {
			t.Errorf("credentials = {ID %s, name %s, secret %d bytes}, want {%s, web, 32 bytes}", f.TunnelID, f.TunnelName, len(f.TunnelSecret), webID)
		}
		if len(f.EdgeAddrs) != 1 || f.EdgeAddrs[0] != "edge-a.test:7844" || f.EdgeCA != e.caPEM {
			t.Errorf("credentials edge = %v, CA match %v; want [edge-a.test:7844], true", f.EdgeAddrs, f.EdgeCA == e.caPEM)
		}
		if f.AccountTag != accountTag(e.caPEM) || len(f.AccountTag) != 32 {
			t.Errorf("AccountTag = %q, want %q", f.AccountTag, accountTag(e.caPEM))
		}
		tun, err := e.svc.GetTunnel(ctx, webID)
		if err != nil {
			t.Fatal(err)
		}
		if !control.VerifySecret(tun, f.TunnelSecret) {
			t.Error("the server does not accept the secret in the credentials file")
		}
	})
	if webID == "" {
		t.FailNow()
	}

	t.Run("create duplicate", func(t *testing.T) {
		e.fails(`a tunnel named "web" already exists`, "tunnel", "create", "web")
	})
	var apiID string
	t.Run("create with --credentials-file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "api.json")
		apiID = e.create("api", "--credentials-file", path)
		f, err := credentials.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if f.TunnelID != apiID {
			t.Errorf("TunnelID = %s, want %s", f.TunnelID, apiID)
		}
		e.fails("already exists", "tunnel", "create", "api2", "--credentials-file", path)
	})

	e.connect(webID, 2)

	t.Run("list table", func(t *testing.T) {
		out := e.ok("tunnel", "list")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 {
			t.Fatalf("list = %q, want a header and 2 tunnels", out)
		}
		if f := strings.Fields(lines[0]); strings.Join(f, " ") != "ID NAME CREATED CONNECTIONS" {
			t.Errorf("header = %q, want ID NAME CREATED CONNECTIONS", lines[0])
		}
		if f := strings.Fields(lines[1]); len(f) != 4 || f[0] != webID || f[1] != "web" || f[3] != "2xedge-a" {
			t.Errorf("row = %q, want %s web <created> 2xedge-a", lines[1], webID)
		}
		if f := strings.Fields(lines[2]); len(f) != 3 || f[1] != "api" {
			t.Errorf("row = %q, want %s api <created>", lines[2], apiID)
		}
	})
	t.Run("list json", func(t *testing.T) {
		var ts []control.Tunnel
		if err := json.Unmarshal([]byte(e.ok("tunnel", "list", "-o", "json", "--name", "web")), &ts); err != nil {
			t.Fatal(err)
		}
		if len(ts) != 1 || ts[0].ID != webID || len(ts[0].Connections) != 2 {
			t.Errorf("list json = %+v, want web with 2 connections", ts)
		}
	})
	t.Run("info", func(t *testing.T) {
		out := e.ok("tunnel", "info", "web")
		for _, want := range []string{
			webID,
			"CONNECTOR ID", "EDGE", "PROTOCOL", "INDEX", "SINCE", "VERSION", "ORIGIN IP",
			"11111111-2222-4333-8444-555555555555", "quic", "test-1.0", "192.0.2.7", "2026-01-02T03:04:05Z",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("info = %q, want it to contain %q", out, want)
			}
		}
		var tun control.Tunnel
		if err := json.Unmarshal([]byte(e.ok("tunnel", "info", webID, "-o", "json")), &tun); err != nil {
			t.Fatal(err)
		}
		if tun.Name != "web" || len(tun.Connections) != 2 {
			t.Errorf("info json = %+v, want web with 2 connections", tun)
		}
		e.fails(`no tunnel "nope"`, "tunnel", "info", "nope")
	})
	t.Run("route dns", func(t *testing.T) {
		out := e.ok("tunnel", "route", "dns", "web", "App.Example.com")
		if want := "Added route app.example.com → tunnel " + webID + "\n"; out != want {
			t.Errorf("output = %q, want %q", out, want)
		}
		e.fails("already routed to another tunnel; use --overwrite-dns", "tunnel", "route", "dns", "api", "app.example.com")
		out = e.ok("tunnel", "route", "dns", "--overwrite-dns", "api", "app.example.com")
		if !strings.Contains(out, apiID) {
			t.Errorf("output = %q, want it to name %s", out, apiID)
		}
		e.fails("route dns", "tunnel", "route", "dns", "web", "not a host")
	})
	t.Run("token", func(t *testing.T) {
		want, err := credentials.Load(credentials.CredentialsPath(e.home, webID))
		if err != nil {
			t.Fatal(err)
		}
		for _, ref := range []string{"web", webID} {
			out := e.ok("tunnel", "token", ref)
			got, err := credentials.ParseToken(out)
			if err != nil {
				t.Fatalf("token %s: %v", ref, err)
			}
			if got.TunnelID != webID || !bytes.Equal(got.TunnelSecret, want.TunnelSecret) || got.EdgeCA != e.caPEM || len(got.EdgeAddrs) != 1 {
				t.Errorf("token %s parses to %+v, want the credentials file's fields", ref, got)
			}
		}
		e.fails("no credentials file", "tunnel", "token", "api")
		e.fails("is for tunnel", "tunnel", "token", "--cred-file", credentials.CredentialsPath(e.home, webID), apiID)
		e.fails("is for tunnel web, not api", "tunnel", "token", "--cred-file", credentials.CredentialsPath(e.home, webID), "api")
	})
	t.Run("delete refused while connected", func(t *testing.T) {
		e.fails("tunnel web has 2 active connection(s); stop them or use -f", "tunnel", "delete", "web")
	})
	t.Run("cleanup", func(t *testing.T) {
		out := e.ok("tunnel", "cleanup", "web")
		if !strings.Contains(out, webID) {
			t.Errorf("output = %q, want it to name %s", out, webID)
		}
		if !strings.Contains(e.ok("tunnel", "info", "web"), "no active connections") {
			t.Error("info after cleanup still lists connections")
		}
	})
	t.Run("delete force", func(t *testing.T) {
		e.connect(webID, 1)
		out := e.ok("tunnel", "delete", "-f", "web")
		path := credentials.CredentialsPath(e.home, webID)
		if !strings.Contains(out, "Deleted tunnel web") || !strings.Contains(out, "Removed credentials file "+path) {
			t.Errorf("output = %q, want it to report the deletion and the removed file", out)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("credentials file still there (stat: %v)", err)
		}
		if strings.Contains(e.ok("tunnel", "list"), webID) {
			t.Error("list still shows the deleted tunnel")
		}
		if !strings.Contains(e.ok("tunnel", "list", "--show-deleted"), webID) {
			t.Error("list --show-deleted does not show the deleted tunnel")
		}
	})
	t.Run("flags override cert.json", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "empty-home")
		var out, errOut bytes.Buffer
		code := Main(ctx, Program{}, []string{"--home", other, "tunnel", "list", "--api", e.api, "--token-file", e.tokenFile, "--ca", e.caFile}, &out, &errOut)
		if code != 0 || !strings.Contains(out.String(), apiID) {
			t.Errorf("exit %d, stdout %q, stderr %q; want 0 and the api tunnel", code, out.String(), errOut.String())
		}
	})
}
