package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adit-dev/adit/access"
	"github.com/adit-dev/adit/access/accesstest"
	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/credentials"
	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/publictls"
)

// TestDashboardBrowser: the dashboard in headless Chromium (Playwright,
// e2e/browser/dashboard.mjs) against a real edge, its real API and a real
// connector the test starts and stops when the script asks: log in, a
// tunnel's connection appearing and disappearing live, a hostname
// published and reached, a refused edit's error at its field, the traffic
// page's live log, every page's layout at a desktop and a phone width
// (screenshots kept in $ADIT_ARTIFACTS/dashboard, or the test's temporary
// directory), labels, keyboard navigation, contrast, logout; then the
// administrators' SSO through the Access tests' OpenID provider: someone
// not allowed is refused with the reason on the login page, an allowed
// person gets the same session cookie.
func TestDashboardBrowser(t *testing.T) {
	chromium, node := needBrowser(t) // browser_helper_test.go
	ctx := context.Background()
	idp, err := accesstest.Start(oidcAnn, oidcBob)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	srv, err := edge.Start(ctx, edge.Config{
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", TunnelAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
		// HTTPS for the certificates page; no ACME order leaves this machine.
		HTTPSAddr: "127.0.0.1:0", DisableHTTP3: true, ACME: publictls.Config{CA: "https://127.0.0.1:1/directory"},
		AdminSSO: access.AdminConfig{IdP: "test", Emails: []string{oidcAnn.Email}},
		Logger:   testLogger(t).With("side", "edge"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if _, err := accessAPI(t, srv).AddAccessIdP(ctx, control.AccessIdP{Name: "test", Issuer: idp.Issuer, ClientID: idp.ClientID,
		ClientSecret: idp.ClientSecret, Scopes: []string{"openid", "email", "profile", "groups"}}); err != nil {
		t.Fatal(err)
	}
	tun := createTunnel(t, srv, "web")
	_, certPEM, keyPEM := wildcardCert(t, "*.localhost")
	origin := helloOrigin(t, "hello from the origin")
	token, err := os.ReadFile(srv.AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	shots := t.TempDir()
	if d := os.Getenv("ADIT_ARTIFACTS"); d != "" {
		shots = filepath.Join(d, "dashboard")
		if err := os.MkdirAll(shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctl := startConnectorControl(t, srv, tun)
	_, httpPort, _ := net.SplitHostPort(srv.HTTPAddr().String())
	const appHost = "app.localhost"
	outb := runBrowser(t, node, "dashboard.mjs", map[string]any{
		"chromium":    chromium,
		"dashboard":   srv.APIURL() + "/",
		"token":       strings.TrimSpace(string(token)),
		"control":     ctl,
		"tunnel":      "web",
		"appHost":     appHost,
		"app":         "http://" + net.JoinHostPort(appHost, httpPort),
		"service":     origin.URL,
		"screenshots": shots,
		"newTunnel":   "made-in-browser",
		"certPEM":     certPEM,
		"keyPEM":      keyPEM,
		"issuer":      idp.Issuer,
		"allowed":     map[string]string{"user": oidcAnn.Name, "password": oidcAnn.Password},
		"refused":     map[string]string{"user": oidcBob.Name, "password": oidcBob.Password},
	}, 4*time.Minute) // a bound, not an expectation (~105 s on a 2-core VM at load average 30)
	var out struct {
		Error, WrongToken, AfterLoginURL, PageSeesCookie, ConnRow, ConnBadge, HostRow         string
		AppBody, EditorError, EditorSelection, LogLine, TrafficSummary, Edges                 string
		KeyboardURL, FocusAfterNav, EditorAfterRollback, IPRuleError, TokenError, TokenSecret string
		SSOButton, SSODenied, SSODeniedURL, SSOAfterLoginURL                                  string
		TunnelNameError, TunnelToken, APITokenError, APIToken, CertError, CertRow             string
		RateLimitError, WAFError, WAFRow                                                      string
		APITokenRevoked, IPRuleDeleted                                                        bool
		SSOAPIStatus, SSONoCSRFStatus                                                         int
		SSOCookies                                                                            []cookieSeen
		History                                                                               []string
		Steps, ConsoleErrors, ChartLabels, CookiesAfterLogout                                 []string
		AppStatus, ConnsAfterStop, OldCookieStatus, NoCSRFStatus, LoginOverflow               int
		Cookies                                                                               []cookieSeen
		PublishError                                                                          struct {
			Text, DescribedBy, Focused, HostnameInvalid string
		}
		Layout []struct {
			Page, Width string
			Overflow    int
			Missing     []string
			Texts       int
		}
		Contrast  []map[string]any
		Unlabeled []map[string]any
		Tabs      []struct {
			Text, Tag string
			Outline   bool
		}
	}
	if err := json.Unmarshal(outb, &out); err != nil {
		t.Fatalf("playwright printed %s: %v", outb, err)
	}
	t.Logf("screenshots in %s; steps %q", shots, out.Steps)
	if out.Error != "" {
		t.Fatalf("in the browser, after steps %q: %s\nso far: %s", out.Steps, out.Error, outb)
	}

	// Login.
	if !strings.Contains(out.WrongToken, "not a valid API token") {
		t.Errorf("a wrong token showed %q at the field, want the refusal", out.WrongToken)
	}
	if strings.Contains(out.AfterLoginURL, "adit_") {
		t.Errorf("the token is in the URL: %s", out.AfterLoginURL)
	}
	checkSessionCookie(t, "token login", out.Cookies)
	if out.PageSeesCookie != "" {
		t.Errorf("the page's script sees the cookie %q", out.PageSeesCookie)
	}

	// Live connections.
	if !strings.Contains(out.ConnRow, srv.Node()) || !strings.Contains(out.ConnRow, "quic") || !strings.Contains(out.ConnBadge, "connection") {
		t.Errorf("connection row %q, badge %q: want this edge, quic", out.ConnRow, out.ConnBadge)
	}
	if out.ConnsAfterStop != 0 {
		t.Errorf("%d connection rows after the connector stopped", out.ConnsAfterStop)
	}

	// Publish, reach, refused edits.
	pe := out.PublishError
	if !strings.Contains(pe.Text, "service") || !strings.Contains(pe.Text, "ftp") || !strings.Contains(pe.DescribedBy, "-err") || pe.Focused != "service" || pe.HostnameInvalid != "" {
		t.Errorf("refused publish: %+v; want the validator's error at the service field, focused, and nothing at the hostname", pe)
	}
	if !strings.Contains(out.HostRow, appHost) || !strings.Contains(out.HostRow, origin.URL) || !strings.Contains(out.HostRow, "routed") {
		t.Errorf("hostname row %q", out.HostRow)
	}
	if out.AppStatus != 200 || out.AppBody != "hello from the origin" {
		t.Errorf("the published hostname answered %d %q", out.AppStatus, out.AppBody)
	}
	if !strings.Contains(out.EditorError, "Line 3") || !strings.Contains(out.EditorError, "nope") || !strings.Contains(out.EditorSelection, "nope://x") {
		t.Errorf("refused ingress edit: error %q, selection %q; want line 3 named and selected", out.EditorError, out.EditorSelection)
	}

	if len(out.History) != 3 || !strings.Contains(out.History[0], "rollback to 1") || !strings.Contains(out.History[0], "current") ||
		strings.Contains(out.EditorAfterRollback, "other.localhost") {
		t.Errorf("history after an edit and a rollback: %q, editor %q; want version 3 = version 1", out.History, out.EditorAfterRollback)
	}
	if !strings.Contains(out.TokenError, "forever") || !strings.Contains(out.TokenSecret, "Client secret") || !strings.Contains(out.TokenSecret, ".access") {
		t.Errorf("service token: refused duration showed %q, the new token %q", out.TokenError, out.TokenSecret)
	}
	if !strings.Contains(out.IPRuleError, "10.0.0.300") {
		t.Errorf("a refused IP rule showed %q at the address field", out.IPRuleError)
	}

	// The other forms: a tunnel, an API token, a certificate, a rate limit, a WAF setting.
	if !strings.Contains(out.TunnelNameError, "no spaces") {
		t.Errorf("a refused tunnel name showed %q at its field", out.TunnelNameError)
	}
	if f, err := credentials.ParseToken(out.TunnelToken); err != nil {
		t.Errorf("the new tunnel's token %q: %v", out.TunnelToken, err)
	} else {
		tuns, err := srv.Service().ListTunnels(ctx, control.ListOptions{Name: "made-in-browser"})
		sum := sha256.Sum256(f.TunnelSecret)
		if err != nil || len(tuns) != 1 || tuns[0].ID != f.TunnelID || !bytes.Equal(tuns[0].SecretHash, sum[:]) ||
			f.EdgeCA != string(srv.CAPEM()) || len(f.EdgeAddrs) == 0 || len(f.TunnelSecret) != 32 {
			t.Errorf("the token names tunnel %s (edges %q), the edge has %+v, %v; want the tunnel with the token's secret", f.TunnelID, f.EdgeAddrs, tuns, err)
		}
	}
	if !strings.Contains(out.APITokenError, "not allowed") || !strings.HasPrefix(out.APIToken, "adit_") || !out.APITokenRevoked {
		t.Errorf("API token: refused name showed %q, the new token %q, revoked %v", out.APITokenError, out.APIToken, out.APITokenRevoked)
	} else if srv.Service().CheckToken(ctx, out.APIToken) {
		t.Error("the API token revoked in the browser still works")
	}
	if !strings.Contains(out.CertError, "does not cover other.example") || !strings.Contains(out.CertRow, "manual") {
		t.Errorf("brought certificate: refused one showed %q at its field, the saved one's row %q", out.CertError, out.CertRow)
	}
	if !strings.Contains(out.RateLimitError, "cookie") || !strings.Contains(out.WAFError, "20000") || !strings.Contains(out.WAFRow, "off") || !out.IPRuleDeleted {
		t.Errorf("shield: refused rate limit %q, refused WAF %q, WAF row %q, IP rule deleted %v", out.RateLimitError, out.WAFError, out.WAFRow, out.IPRuleDeleted)
	}

	// Traffic.
	if !strings.Contains(out.LogLine, "200") || !strings.Contains(out.LogLine, "/from-the-test") {
		t.Errorf("live log line %q", out.LogLine)
	}
	if len(out.ChartLabels) != 4 || !strings.Contains(out.ChartLabels[0], "peak") || strings.HasSuffix(out.ChartLabels[0], "peak 0") {
		t.Errorf("charts %q, want 4 with this hour's requests", out.ChartLabels)
	}
	if !strings.Contains(out.TrafficSummary, appHost) {
		t.Errorf("traffic summary %q lacks %s", out.TrafficSummary, appHost)
	}
	if !strings.Contains(out.Edges, srv.Node()) {
		t.Errorf("edges page %q does not name this edge", out.Edges)
	}

	// Layout, labels, contrast.
	pages := map[string]bool{}
	for _, l := range out.Layout {
		pages[l.Page+"/"+l.Width] = true
		if l.Overflow > 0 || len(l.Missing) > 0 || l.Texts == 0 {
			t.Errorf("%s at %s width: %d px of horizontal overflow, not visible: %q (%d texts checked)", l.Page, l.Width, l.Overflow, l.Missing, l.Texts)
		}
	}
	for _, p := range []string{"tunnels", "tunnel", "traffic", "access", "shield", "certificates", "edges", "tokens", "logged-out"} {
		if !pages[p+"/desktop"] || !pages[p+"/phone"] {
			t.Errorf("page %s was not checked at both widths", p)
		}
		for _, w := range []string{"desktop", "phone"} {
			if _, err := os.Stat(filepath.Join(shots, p+"-"+w+".png")); err != nil {
				t.Errorf("screenshot: %v", err)
			}
		}
	}
	if out.LoginOverflow > 0 {
		t.Errorf("the login page overflows a phone by %d px", out.LoginOverflow)
	}
	for _, c := range out.Contrast {
		t.Errorf("low contrast: %v", c)
	}
	for _, u := range out.Unlabeled {
		t.Errorf("an input without a label: %v", u)
	}

	// Keyboard.
	if len(out.Tabs) < 3 || out.Tabs[0].Text != "Skip to content" || out.Tabs[len(out.Tabs)-1].Text != "Access" {
		t.Errorf("Tab went through %+v; want the skip link first, then the navigation up to Access", out.Tabs)
	}
	for _, f := range out.Tabs {
		if !f.Outline {
			t.Errorf("focused %s %q shows no focus outline", f.Tag, f.Text)
		}
	}
	if !strings.HasSuffix(out.KeyboardURL, "#/access") || out.FocusAfterNav != "main" {
		t.Errorf("Enter on Access: at %s, focus on %q; want #/access with focus on main", out.KeyboardURL, out.FocusAfterNav)
	}

	// Logout.
	if len(out.CookiesAfterLogout) != 0 {
		t.Errorf("cookies after logout: %q", out.CookiesAfterLogout)
	}
	if out.OldCookieStatus != 401 || out.NoCSRFStatus != 401 {
		t.Errorf("after logout the old cookie got %d (want 401); without the CSRF header %d (want 401)", out.OldCookieStatus, out.NoCSRFStatus)
	}

	// Admin SSO.
	if out.SSOButton != "Sign in with test" {
		t.Errorf("the login page offers %q, want Sign in with test", out.SSOButton)
	}
	if !strings.Contains(out.SSODenied, oidcBob.Email) || !strings.Contains(out.SSODenied, "may not administer") ||
		strings.Contains(out.SSODeniedURL, "sso_error") || strings.Contains(out.SSODeniedURL, "code=") {
		t.Errorf("a refused SSO login showed %q at %s; want the reason on the login page, and a clean URL", out.SSODenied, out.SSODeniedURL)
	}
	checkSessionCookie(t, "SSO login", out.SSOCookies)
	if strings.Contains(out.SSOAfterLoginURL, "code=") || strings.Contains(out.SSOAfterLoginURL, "state=") {
		t.Errorf("after the SSO login the browser is at %s", out.SSOAfterLoginURL)
	}
	if out.SSOAPIStatus != 200 || out.SSONoCSRFStatus != 401 {
		t.Errorf("the SSO session on the API: %d with the CSRF header (want 200), %d without (want 401)", out.SSOAPIStatus, out.SSONoCSRFStatus)
	}
	if n := idp.Logins(); n != 2 {
		t.Errorf("the provider saw %d logins, want bob's and ann's", n)
	}

	for _, e := range out.ConsoleErrors {
		t.Errorf("browser console: %s", e)
	}
}

// cookieSeen is a cookie as Playwright reports it.
type cookieSeen struct {
	Name, SameSite, Path, Domain string
	HTTPOnly                     bool `json:"httpOnly"`
	Secure                       bool
}

// checkSessionCookie wants the dashboard's session cookie alone, HttpOnly,
// Secure, SameSite=Strict, on path /.
func checkSessionCookie(t *testing.T, what string, cookies []cookieSeen) {
	t.Helper()
	var session bool
	for _, c := range cookies {
		if c.Name == "__Host-adit_session" {
			session = c.HTTPOnly && c.Secure && c.SameSite == "Strict" && c.Path == "/"
			if !session {
				t.Errorf("%s: session cookie %+v, want HttpOnly, Secure, SameSite=Strict, Path=/", what, c)
			}
		}
	}
	if !session || len(cookies) != 1 {
		t.Errorf("%s: cookies %+v, want the session cookie alone", what, cookies)
	}
}

// startConnectorControl serves POST /start and /stop on loopback: the
// browser script's way to have a connector (remotely configured) started
// and stopped for the tunnel. It returns the base URL.
func startConnectorControl(t *testing.T, srv *edge.Server, tun tunnelFixture) string {
	t.Helper()
	var (
		mu   sync.Mutex
		stop func()
	)
	stopIt := func() {
		mu.Lock()
		defer mu.Unlock()
		if stop != nil {
			stop()
			stop = nil
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /start", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if stop != nil {
			http.Error(w, "already running", http.StatusConflict)
			return
		}
		c, err := connector.New(connector.Config{
			TunnelID: tun.ID, Secret: tun.Secret, EdgeAddrs: []string{srv.TunnelAddr().String()}, EdgeCA: srv.CAPEM(),
			ServerName: "localhost", RemoteConfig: true, HAConnections: 2, GracePeriod: time.Second,
			Logger: testLogger(t).With("side", "connector"),
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		stop = func() { cancel(); <-done }
		select {
		case <-c.Ready():
			w.WriteHeader(http.StatusNoContent)
		case err := <-done:
			stop = nil
			http.Error(w, fmt.Sprintf("connector stopped: %v", err), http.StatusInternalServerError)
		case <-time.After(30 * time.Second):
			http.Error(w, "connector not ready after 30s", http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		stopIt()
		w.WriteHeader(http.StatusNoContent)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() {
		hs.Close()
		stopIt()
	})
	return "http://" + ln.Addr().String()
}
