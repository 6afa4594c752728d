package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adit-dev/adit/access/accesstest"
	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/internal/store"
	"github.com/adit-dev/adit/publictls"
)

// Access end to end: a real OpenID provider (access/accesstest, zitadel's
// op on loopback), an edge, a connector and an origin; a browser driven by
// Playwright in Debian's chromium.

var (
	oidcAnn = accesstest.User{Name: "ann", Password: "ann-pw", Email: "ann@example.com", Groups: []string{"eng"}}
	oidcBob = accesstest.User{Name: "bob", Password: "bob-pw", Email: "bob@other.org", Groups: []string{"sales"}}
)

// accessAPI is a client of the edge's API with its admin token.
func accessAPI(t testing.TB, srv *edge.Server) *control.Client {
	t.Helper()
	tok, err := os.ReadFile(srv.AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	c, err := control.NewClient(srv.APIURL(), strings.TrimSpace(string(tok)), srv.CAPEM())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// localhostClient reaches every *.localhost name at the edge's public
// listener (as a browser resolves *.localhost to loopback): the HTTPS one
// when roots are given (trusting them), else the plain HTTP one.
func localhostClient(srv *edge.Server, roots ...*x509.CertPool) *http.Client {
	d := &net.Dialer{}
	addr := srv.HTTPAddr().String()
	tr := &http.Transport{}
	if len(roots) > 0 {
		addr = srv.HTTPSAddr().String()
		tr.TLSClientConfig = &tls.Config{RootCAs: roots[0], MinVersion: tls.VersionTLS12}
	}
	tr.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
		if h, _, _ := net.SplitHostPort(a); strings.HasSuffix(h, ".localhost") {
			a = addr
		}
		return d.DialContext(ctx, network, a)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}
}

// jwtOrigin answers with what reached it: the assertion's claims (not
// checked: the connector checks when the rule asks) and the path.
func jwtOrigin(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := map[string]any{"path": r.URL.Path, "client_assertion": r.Header.Get("Adit-Access-Jwt-Assertion") != "", "cookie": r.Header.Get("Cookie")}
		if tok := r.Header.Get("Cf-Access-Jwt-Assertion"); tok != "" {
			if parts := strings.Split(tok, "."); len(parts) == 3 {
				b, _ := base64.RawURLEncoding.DecodeString(parts[1])
				var cl map[string]any
				json.Unmarshal(b, &cl)
				out["email"], out["groups"], out["idp"] = cl["email"], cl["groups"], cl["idp"]
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// accessSetup is an edge with an identity provider and two applications
// (app.localhost: example.com people; short.localhost: a 3s session), and
// a connector whose rule for app.localhost requires the edge's JWT.
type accessSetup struct {
	srv        *edge.Server
	api        *control.Client
	idp        *accesstest.Provider
	app, short control.AccessApp
	scheme     string // http, or https with tls
	port       string // of the listener the scheme names
	roots      *x509.CertPool
}

// startAccessSetup starts it on the edge's plain HTTP listener, or with tls
// on its HTTPS listener, with a certificate for *.localhost the edge was
// brought (its CA in roots).
func startAccessSetup(t testing.TB, tls bool) *accessSetup {
	t.Helper()
	ctx := context.Background()
	p, err := accesstest.Start(oidcAnn, oidcBob)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	s := &accessSetup{idp: p, scheme: "http"}
	var srv *edge.Server
	if tls {
		srv, err = edge.Start(ctx, edge.Config{
			DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", TunnelAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
			// No ACME order leaves this machine: every name has a brought certificate.
			ACME:   publictls.Config{CA: "https://127.0.0.1:1/directory"},
			Logger: testLogger(t).With("side", "edge"),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		caCert, certPEM, keyPEM := wildcardCert(t.(*testing.T), "*.localhost")
		for _, h := range []string{"app.localhost", "short.localhost", "open.localhost", "ssh.localhost"} {
			if _, err := srv.Certificates().Add(ctx, h, control.AddCertificateRequest{CertPEM: certPEM, KeyPEM: keyPEM}); err != nil {
				t.Fatal(err)
			}
		}
		s.roots = x509.NewCertPool()
		s.roots.AddCert(caCert)
		s.scheme = "https"
		_, s.port, _ = net.SplitHostPort(srv.HTTPSAddr().String())
	} else {
		srv = startEdge(t, "")
		_, s.port, _ = net.SplitHostPort(srv.HTTPAddr().String())
	}
	s.srv, s.api = srv, accessAPI(t, srv)
	if _, err := s.api.AddAccessIdP(ctx, control.AccessIdP{Name: "test", Issuer: p.Issuer, ClientID: p.ClientID,
		ClientSecret: p.ClientSecret, Scopes: []string{"openid", "email", "profile", "groups"}}); err != nil {
		t.Fatal(err)
	}
	allow := []control.AccessPolicy{{Action: "allow", Include: []string{"email_domain:example.com"}}}
	if s.app, err = s.api.CreateAccessApp(ctx, control.AccessApp{Name: "web", Domain: "app.localhost", Policies: allow}); err != nil {
		t.Fatal(err)
	}
	if s.short, err = s.api.CreateAccessApp(ctx, control.AccessApp{Name: "brief", Domain: "short.localhost", SessionDuration: "3s", Policies: allow}); err != nil {
		t.Fatal(err)
	}
	tun := createTunnel(t, srv, "access", "app.localhost", "short.localhost", "open.localhost", "ssh.localhost")
	origin := jwtOrigin(t)
	team := s.url("app.localhost", "")
	ing, err := ingress.New(&ingress.Config{Ingress: []ingress.RuleConfig{
		{Hostname: "app.localhost", Service: origin, OriginRequest: ingress.OriginRequestConfig{Access: &ingress.Access{
			Required: true, TeamName: team, AUDTag: []string{s.app.AUD}}}},
		{Hostname: "open.localhost", Service: origin, OriginRequest: ingress.OriginRequestConfig{Access: &ingress.Access{
			Required: true, TeamName: team, AUDTag: []string{s.app.AUD}}}},
		{Service: origin},
	}})
	if err != nil {
		t.Fatal(err)
	}
	startConnector(t, srv, tun, ing, func(c *connector.Config) { c.AccessHTTPClient = s.client() })
	return s
}

func (s *accessSetup) url(host, path string) string {
	return s.scheme + "://" + host + ":" + s.port + path
}

// client reaches the setup's listener for every *.localhost name.
func (s *accessSetup) client() *http.Client {
	if s.roots != nil {
		return localhostClient(s.srv, s.roots)
	}
	return localhostClient(s.srv)
}

// TestAccessBrowser: the login in a real browser over the edge's HTTPS
// listener (a certificate the edge was brought; the browser told to accept
// its test CA): the provider's form, the
// session cookie, the origin seeing the JWT (and the connector checking
// it), logout, a denied user's 403 page, a session expiring.
func TestAccessBrowser(t *testing.T) {
	chromium, node := needBrowser(t) // browser_helper_test.go
	s := startAccessSetup(t, true)
	shots := t.TempDir()
	if d := os.Getenv("ADIT_SCREENSHOTS"); d != "" {
		shots = d
	}
	outb := runBrowser(t, node, "access.mjs", map[string]any{
		"chromium": chromium, "issuer": s.idp.Issuer, "app": s.url("app.localhost", ""), "short": s.url("short.localhost", ""),
		"shortWaitMs": 4000, "screenshots": shots,
	}, 2*time.Minute)
	var out struct {
		Error, LoginPage, AfterLoginURL, Logout, AfterLogoutURL, ShortExpiredURL string
		Origin, Second, ShortOrigin                                              map[string]any
		Cookies                                                                  []struct {
			Name, SameSite, Path string
			HTTPOnly             bool `json:"httpOnly"`
			Secure               bool
		}
		Denied struct {
			Status    int
			RequestID string `json:"requestId"`
			Body      string
		}
	}
	if err := json.Unmarshal(outb, &out); err != nil {
		t.Fatalf("playwright printed %s: %v", outb, err)
	}
	if out.Error != "" {
		t.Fatalf("in the browser: %s\nso far: %s", out.Error, outb)
	}
	if !strings.HasPrefix(out.LoginPage, s.idp.Issuer+"/login") {
		t.Errorf("first visit went to %q, want the provider's login page", out.LoginPage)
	}
	if out.AfterLoginURL != s.url("app.localhost", "/hello?x=1") {
		t.Errorf("after login the browser is at %q, want back at /hello?x=1", out.AfterLoginURL)
	}
	if out.Origin["email"] != "ann@example.com" || out.Origin["idp"] != "test" || out.Origin["path"] != "/hello" {
		t.Errorf("the origin saw %v, want ann's JWT from idp test at /hello", out.Origin)
	}
	if out.Second["email"] != "ann@example.com" {
		t.Errorf("second visit: the origin saw %v", out.Second)
	}
	ok := false
	for _, c := range out.Cookies {
		if c.Name == "Adit_Authorization" {
			ok = c.HTTPOnly && c.Secure && c.SameSite == "Lax" && c.Path == "/"
			if !ok {
				t.Errorf("session cookie %+v, want HttpOnly, Secure, SameSite=Lax", c)
			}
		}
	}
	if !ok {
		t.Errorf("no good session cookie among %+v", out.Cookies)
	}
	if !strings.Contains(out.Logout, "logged out") {
		t.Errorf("logout page: %q", out.Logout)
	}
	if !strings.HasPrefix(out.AfterLogoutURL, s.idp.Issuer) {
		t.Errorf("after logout the app sent the browser to %q, want the provider", out.AfterLogoutURL)
	}
	d := out.Denied
	if d.Status != 403 || d.RequestID == "" || !strings.Contains(d.Body, d.RequestID) || !strings.Contains(d.Body, `"web"`) || !strings.Contains(d.Body, "bob@other.org") {
		t.Errorf("bob: status %d, request ID %q, page %q; want 403 naming the app and bob, with the request ID", d.Status, d.RequestID, d.Body)
	}
	if out.ShortOrigin["email"] != "ann@example.com" {
		t.Errorf("short app after login: %v", out.ShortOrigin)
	}
	if !strings.HasPrefix(out.ShortExpiredURL, s.idp.Issuer) {
		t.Errorf("after the 3s session: the browser is at %q, want the provider's login", out.ShortExpiredURL)
	}
	t.Logf("screenshots in %s", shots)
}

// TestAccessConnectorCheck: originRequest.access at the connector refuses
// what an edge let through without a JWT for the rule's application.
func TestAccessConnectorCheck(t *testing.T) {
	s := startAccessSetup(t, false)
	ctx := context.Background()
	c := s.client()
	tok, err := s.api.CreateAccessServiceToken(ctx, control.CreateServiceTokenRequest{Name: "robot"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.api.AddAccessPolicy(ctx, "web", control.AccessPolicy{Action: "service_auth", Include: []string{"service_token:robot"}}); err != nil {
		t.Fatal(err)
	}
	get := func(host string, hdr ...string) (int, string) {
		req, _ := http.NewRequest("GET", s.url(host, "/x"), nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readAll(t, resp)
	}
	// Through the edge's Access: the connector accepts the edge's JWT.
	if code, body := get("app.localhost", "Cf-Access-Client-Id", tok.ClientID, "Cf-Access-Client-Secret", tok.ClientSecret); code != 200 {
		t.Errorf("service token through the app: %d %s, want 200", code, body)
	}
	// A hostname with no Access application at the edge (a misconfigured
	// edge): the connector refuses, even with a client-sent assertion.
	if code, body := get("open.localhost", "Cf-Access-Jwt-Assertion", "forged"); code != 403 || !strings.Contains(body, "originRequest.access") {
		t.Errorf("no application at the edge: %d %s, want the connector's 403", code, body)
	}
	// No credentials at all: the edge answers 401 JSON before the connector.
	if code, body := get("app.localhost"); code != 401 || !strings.Contains(body, `"application":"web"`) {
		t.Errorf("no credentials: %d %s, want the edge's 401", code, body)
	}
	// Revoked: refused at once.
	if err := s.api.RevokeAccessServiceToken(ctx, "robot"); err != nil {
		t.Fatal(err)
	}
	if code, _ := get("app.localhost", "Cf-Access-Client-Id", tok.ClientID, "Cf-Access-Client-Secret", tok.ClientSecret); code != 403 {
		t.Errorf("revoked token: %d, want 403", code)
	}
}

// TestAccessCLI: the administration commands and `adit access login|token|curl`
// against a real edge and provider (the browser's part done by an HTTP client).
func TestAccessCLI(t *testing.T) {
	s := startAccessSetup(t, false)
	home := t.TempDir()
	env := []string{"ADIT_HOME=" + home}
	if out, code := runAdit(t, env, "login", "--api", s.srv.APIURL(), "--token-file", s.srv.AdminTokenFile(), "--ca", s.srv.CAFile()); code != 0 {
		t.Fatalf("adit login: %s", out)
	}
	secret := filepath.Join(home, "secret")
	os.WriteFile(secret, []byte(s.idp.ClientSecret), 0o600)
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"access", "idp", "add", "other", "--issuer", s.idp.Issuer, "--client-id", s.idp.ClientID, "--client-secret-file", secret}, "Added identity provider other", 0},
		{[]string{"access", "idp", "list"}, "other", 0},
		{[]string{"access", "app", "create", "admin", "--domain", "app.localhost/admin", "--idp", "test", "--session", "1h"}, "Audience tag", 0},
		{[]string{"access", "policy", "add", "admin", "--action", "allow", "--include", "email:ann@example.com,group:admins", "--exclude", "ip:192.0.2.0/24"}, "Added policy 1 to admin", 0},
		{[]string{"access", "policy", "add", "admin", "--action", "sometimes", "--include", "everyone"}, "want allow, deny, bypass or service_auth", 1},
		{[]string{"access", "app", "info", "admin"}, "email:ann@example.com,group:admins", 0},
		{[]string{"access", "app", "list", "-o", "json"}, `"domain": "app.localhost/admin"`, 0},
		{[]string{"access", "token", "create", "ci", "--duration", "1h"}, "Adit-Access-Client-Secret:", 0},
		{[]string{"access", "token", "list"}, "ci", 0},
		{[]string{"access", "token", "revoke", "ci"}, "Revoked service token ci", 0},
		{[]string{"access", "idp", "delete", "test"}, "is used by application", 1},
		{[]string{"access", "policy", "delete", "admin", "1"}, "0 left", 0},
		{[]string{"access", "app", "delete", "admin"}, "Deleted application admin", 0},
		{[]string{"access", "idp", "delete", "other"}, "Deleted identity provider other", 0},
	} {
		out, code := runAdit(t, env, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("adit %s: exit %d, %q; want exit %d with %q", strings.Join(tc.args, " "), code, out, tc.code, tc.want)
		}
	}

	// adit access login: the browser part is an HTTP client that follows the
	// URL the command prints, logs in at the provider's form and lands on
	// the command's loopback callback.
	cmd := exec.Command(aditBin, "access", "login", "--no-browser", s.url("app.localhost", "/"))
	cmd.Env = append(os.Environ(), env...)
	stderr, _ := cmd.StderrPipe()
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var printed string
	for !strings.Contains(printed, "/.adit/login?") {
		n, err := stderr.Read(buf)
		if err != nil {
			t.Fatalf("access login printed %q, then %v", printed, err)
		}
		printed += string(buf[:n])
	}
	var loginURL string
	for _, f := range strings.Fields(printed) {
		if strings.Contains(f, "/.adit/login?") {
			loginURL = f
		}
	}
	browserLogin(t, s.client(), loginURL, oidcAnn)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("access login: %v: %s", err, printed)
	}
	if !strings.Contains(stdout.String(), "Logged in to") {
		t.Errorf("access login printed %q", stdout.String())
	}
	out, code := runAdit(t, env, "access", "token", s.url("app.localhost", "/"))
	tok := strings.TrimSpace(out)
	if code != 0 || strings.Count(tok, ".") != 2 {
		t.Fatalf("access token: exit %d, %q", code, out)
	}
	if fi, err := os.Stat(filepath.Join(home, "access", "app.localhost.token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v, %v; want mode 0600", fi, err)
	}
	req, _ := http.NewRequest("GET", s.url("app.localhost", "/with-token"), nil)
	req.Header.Set("cf-access-token", tok)
	resp, err := s.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(body, "ann@example.com") {
		t.Errorf("the token as cf-access-token: %d %s", resp.StatusCode, body)
	}
	if _, err := exec.LookPath("curl"); err == nil {
		out, code := runAdit(t, env, "access", "curl", s.url("app.localhost", "/via-curl"), "--", "-sS", "--connect-to", "app.localhost:"+s.port+":"+s.srv.HTTPAddr().String())
		if code != 0 || !strings.Contains(out, `"email":"ann@example.com"`) || !strings.Contains(out, "/via-curl") {
			t.Errorf("access curl: exit %d, %q", code, out)
		}
	}
}

// browserLogin logs in at u as user with a fresh cookie jar.
func browserLogin(t testing.TB, c *http.Client, u string, user accesstest.User) *http.Response {
	t.Helper()
	c.Jar = accesstest.Jar()
	resp, err := accesstest.BrowserLogin(context.Background(), c, u, user)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// testAccessSSHToken puts an Access application on ssh.example.test that
// lets in one service token, and runs ssh (whose ProxyCommand is `adit
// access ssh`) with the args: refused without the token, through with it.
func testAccessSSHToken(t *testing.T, srv *edge.Server, args []string) {
	ctx := context.Background()
	api := accessAPI(t, srv)
	if _, err := api.CreateAccessApp(ctx, control.AccessApp{Name: "ssh", Domain: "ssh.example.test", Policies: []control.AccessPolicy{
		{Action: "service_auth", Include: []string{"service_token:ssh-bot"}}}}); err != nil {
		t.Fatal(err)
	}
	tok, err := api.CreateAccessServiceToken(ctx, control.CreateServiceTokenRequest{Name: "ssh-bot"})
	if err != nil {
		t.Fatal(err)
	}
	ssh := func(env ...string) (string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ssh", args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := ssh(); err == nil || !strings.Contains(out, "401") {
		t.Errorf("ssh behind Access without a token: %v, %q; want a failure naming the edge's 401", err, out)
	}
	out, err := ssh("ADIT_ACCESS_CLIENT_ID="+tok.ClientID, "ADIT_ACCESS_CLIENT_SECRET="+tok.ClientSecret)
	if err != nil || strings.TrimSpace(out) != "hello" {
		t.Errorf("ssh behind Access with a service token: %v, %q; want hello", err, out)
	}
}

// TestAccessRevokeTwoEdges: two edges on one etcd; a service token revoked
// through one is refused by both within 2 s. Edge b holds no connection of
// the tunnel, so a request Access lets through gets b's 502, one it
// refuses its 403.
func TestAccessRevokeTwoEdges(t *testing.T) {
	st, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	edges := []*edge.Server{startEdgeOnEtcd(t, st.Endpoints()), startEdgeOnEtcd(t, st.Endpoints())}
	a := edges[0]
	ctx := context.Background()
	api := accessAPI(t, a)
	tun := createTunnel(t, a, "web", "app.example.test")
	startConnector(t, a, tun, mustIngress(t, jwtOrigin(t)))
	if _, err := api.CreateAccessApp(ctx, control.AccessApp{Name: "web", Domain: "app.example.test",
		Policies: []control.AccessPolicy{{Action: "service_auth", Include: []string{"any_valid_service_token"}}}}); err != nil {
		t.Fatal(err)
	}
	tok, err := api.CreateAccessServiceToken(ctx, control.CreateServiceTokenRequest{Name: "robot"})
	if err != nil {
		t.Fatal(err)
	}
	status := func(srv *edge.Server) int {
		req, _ := http.NewRequest("GET", edgeURL(srv, "/"), nil)
		req.Host = "app.example.test"
		req.Header.Set("Adit-Access-Client-Id", tok.ClientID)
		req.Header.Set("Adit-Access-Client-Secret", tok.ClientSecret)
		resp, err := edgeClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		return resp.StatusCode
	}
	for i, srv := range edges {
		waitFor(t, "the token on every edge", func() bool { c := status(srv); return c != 401 && c != 403 && c != 404 })
		t.Logf("edge %d lets the token through: %d", i, status(srv))
	}
	start := time.Now()
	if err := api.RevokeAccessServiceToken(ctx, "robot"); err != nil {
		t.Fatal(err)
	}
	for i, srv := range edges {
		if !waitWithin(2*time.Second-time.Since(start), func() bool { return status(srv) == 403 }) {
			t.Fatalf("edge %d still lets the revoked token through after %v", i, time.Since(start))
		}
	}
	t.Logf("both edges refuse the revoked token %v after the revocation", time.Since(start))
}
