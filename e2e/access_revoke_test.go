package e2e

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/adit-dev/adit/access/accesstest"
	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/internal/store"
)

// startEdgeOnEtcd starts an in-process edge on the etcd at endpoints.
func startEdgeOnEtcd(t testing.TB, endpoints []string) *edge.Server {
	t.Helper()
	srv, err := edge.Start(context.Background(), edge.Config{
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", TunnelAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
		EtcdEndpoints: endpoints, Logger: testLogger(t).With("side", "edge"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// TestAccessSessionRevocation: sessions are revoked server-side. Two edges
// share one etcd; edge a holds the tunnel (b answers a request Access lets
// through with its 502, one it refuses with 401 or the login redirect). A
// session ended at a's /.adit/logout is refused by b within 2 s and by an
// edge started later; `adit access app revoke-sessions --email` through
// b's API ends a person's sessions on a. The origin never sees the
// session cookie.
func TestAccessSessionRevocation(t *testing.T) {
	st, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	idp, err := accesstest.Start(oidcAnn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	ctx := context.Background()
	a, b := startEdgeOnEtcd(t, st.Endpoints()), startEdgeOnEtcd(t, st.Endpoints())
	api := accessAPI(t, a)
	if _, err := api.AddAccessIdP(ctx, control.AccessIdP{Name: "test", Issuer: idp.Issuer, ClientID: idp.ClientID,
		ClientSecret: idp.ClientSecret, Scopes: []string{"openid", "email", "profile", "groups"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.CreateAccessApp(ctx, control.AccessApp{Name: "web", Domain: "app.localhost",
		Policies: []control.AccessPolicy{{Action: "allow", Include: []string{"email_domain:example.com"}}}}); err != nil {
		t.Fatal(err)
	}
	tun := createTunnel(t, a, "web", "app.localhost")
	startConnector(t, a, tun, mustIngress(t, jwtOrigin(t)))

	appURL := func(srv *edge.Server, path string) string {
		_, port, _ := net.SplitHostPort(srv.HTTPAddr().String())
		return "http://app.localhost:" + port + path
	}
	login := func() string {
		c := localhostClient(a)
		c.Jar = accesstest.Jar()
		resp := browserLogin(t, c, appURL(a, "/"), oidcAnn)
		if body := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(body, "ann@example.com") {
			t.Fatalf("login: %d %s", resp.StatusCode, body)
		}
		u, _ := url.Parse(appURL(a, "/"))
		for _, ck := range c.Jar.Cookies(u) {
			if ck.Name == "Adit_Authorization" {
				return ck.Value
			}
		}
		t.Fatal("no session cookie after the login")
		return ""
	}
	// get sends the session as a browser's cookie, beside another cookie.
	get := func(srv *edge.Server, tok string, browser bool) (int, string, http.Header) {
		req, _ := http.NewRequest("GET", appURL(srv, "/"), nil)
		req.Header.Set("Cookie", "theme=dark; Adit_Authorization="+tok)
		if browser {
			req.Header.Set("Accept", "text/html")
		}
		c := localhostClient(srv)
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readAll(t, resp), resp.Header
	}
	waitRefused := func(srv *edge.Server, tok, what string, start time.Time) {
		t.Helper()
		var code int
		if !waitWithin(2*time.Second-time.Since(start), func() bool {
			code, _, _ = get(srv, tok, false)
			return code == http.StatusUnauthorized
		}) {
			t.Fatalf("%s: still let through (%d) %v after the revocation", what, code, time.Since(start))
		}
		t.Logf("%s: refused %v after the revocation", what, time.Since(start))
	}

	tok := login()
	code, body, _ := get(a, tok, false)
	if code != 200 || !strings.Contains(body, `"cookie":"theme=dark"`) || !strings.Contains(body, "ann@example.com") {
		t.Errorf("through a: %d %s; want ann's assertion and only the theme cookie at the origin", code, body)
	}
	waitFor(t, "the session on edge b", func() bool { code, _, _ := get(b, tok, false); return code == http.StatusBadGateway })

	// Logout on a: b refuses the session within 2 s, a browser gets the login.
	start := time.Now()
	c := localhostClient(a)
	req, _ := http.NewRequest("GET", appURL(a, "/.adit/logout"), nil)
	req.Header.Set("Cookie", "Adit_Authorization="+tok)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	waitRefused(b, tok, "the logged-out session on edge b", start)
	if code, _, h := get(b, tok, true); code != http.StatusFound || !strings.HasPrefix(h.Get("Location"), "/.adit/login") {
		t.Errorf("a browser with the logged-out session on edge b: %d to %q, want the login redirect", code, h.Get("Location"))
	}
	// After a restart: a new edge loads the revocations.
	b.Close()
	b = startEdgeOnEtcd(t, st.Endpoints())
	if code, _, _ := get(b, tok, false); code != http.StatusUnauthorized {
		t.Errorf("the logged-out session on a restarted edge: %d, want 401", code)
	}

	// An operator revokes ann's sessions with the CLI, through b's API.
	tok = login()
	if code, _, _ := get(a, tok, false); code != 200 {
		t.Fatalf("a new session: %d", code)
	}
	env := []string{"ADIT_HOME=" + t.TempDir()}
	mustAdit(t, env, "login", "--api", b.APIURL(), "--token-file", b.AdminTokenFile(), "--ca", b.CAFile())
	start = time.Now()
	if out := mustAdit(t, env, "access", "app", "revoke-sessions", "web", "--email", "Ann@example.com"); !strings.Contains(out, "Revoked the sessions of ann@example.com of web") {
		t.Errorf("revoke-sessions printed %q", out)
	}
	waitRefused(a, tok, "ann's session after revoke-sessions", start)
	if out, code := runAdit(t, env, "access", "app", "revoke-sessions", "nope"); code == 0 || !strings.Contains(out, "not found") {
		t.Errorf("revoke-sessions of a missing app: exit %d, %q", code, out)
	}
}
