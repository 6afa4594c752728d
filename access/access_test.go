package access

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/access/accesstest"
	"github.com/adit-dev/adit/access/accessverify"
	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge/layer"
	"github.com/adit-dev/adit/internal/poll"
	"github.com/adit-dev/adit/internal/store"
)

// The users of the test provider.
var (
	ann = accesstest.User{Name: "ann", Password: "ann-pw", Email: "ann@example.com", Groups: []string{"eng", "ops"}}
	bob = accesstest.User{Name: "bob", Password: "bob-pw", Email: "bob@other.org", Groups: []string{"sales"}}
	eve = accesstest.User{Name: "eve", Password: "eve-pw", Email: "eve@example.com", Groups: []string{"eng"}}
)

// openStore starts an embedded etcd.
func openStore(t testing.TB) *clientv3.Client {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("etcd: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st.Client()
}

// edgeSide is one Access layer in front of an echo origin, on a real HTTP
// listener, with its API on another: what an edge does, without the
// tunnel.
type edgeSide struct {
	l      *Layer
	reg    *prometheus.Registry
	public *httptest.Server
	api    *httptest.Server
}

// originSeen is what the echo origin answers: what reached it.
type originSeen struct {
	Assertion   string `json:"assertion"`
	CFAssertion string `json:"cf_assertion"`
	Email       string `json:"email"`
	Token       string `json:"token"`
	Path        string `json:"path"`
	Cookie      string `json:"cookie,omitempty"`
	HasSecret   bool   `json:"has_secret"`
	Lookalike   string `json:"lookalike,omitempty"`
}

func startSide(t testing.TB, cli *clientv3.Client, cfg Config) *edgeSide {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reg := prometheus.NewRegistry()
	l, err := New(layer.Deps{Ctx: ctx, Etcd: cli, Logger: slog.New(slog.DiscardHandler), Metrics: reg}, cfg)
	if err != nil {
		t.Fatalf("access.New: %v", err)
	}
	origin := layer.HandlerFunc(func(w http.ResponseWriter, r *http.Request, req *layer.Request) {
		seen := originSeen{
			Assertion: r.Header.Get(AssertionHeader), CFAssertion: r.Header.Get(CFAssertionHeader),
			Path: r.URL.Path, Cookie: strings.Join(r.Header["Cookie"], " | "), HasSecret: r.Header.Get(ClientSecretHeader) != "" || r.Header.Get(CFClientSecretHeader) != "",
		}
		if req.Identity != nil {
			seen.Email, seen.Token = req.Identity.Email, req.Identity.ServiceToken
		}
		for k, v := range r.Header {
			if strings.Contains(k, "_") {
				seen.Lookalike = k + ": " + strings.Join(v, ",")
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(seen)
	})
	h := l.Wrap(origin)
	public := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := strings.ToLower(hostOnly(r.Host))
		req := &layer.Request{ID: randomString(8), Host: host, ClientAddr: r.RemoteAddr}
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			req.ClientIP = ap.Addr().Unmap()
		}
		if fake := r.Header.Get("Test-Client-Ip"); fake != "" {
			req.ClientIP = netip.MustParseAddr(fake)
		}
		h.ServeRouted(w, r, req)
	}))
	mux := http.NewServeMux()
	for _, e := range l.Endpoints() {
		mux.HandleFunc(e.Pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := e.Handle(w, r); err != nil {
				_, status, ok := control.ErrorCode(err)
				if !ok {
					status = 500
				}
				w.WriteHeader(status)
				json.NewEncoder(w).Encode(control.ErrorBody{Error: err.Error()})
			}
		})
	}
	api := httptest.NewServer(mux)
	s := &edgeSide{l: l, reg: reg, public: public, api: api}
	t.Cleanup(func() {
		public.Close()
		api.Close()
		cancel()
		l.Close()
	})
	return s
}

// call sends an API request and decodes the answer into out.
func (s *edgeSide) call(t testing.TB, method, path string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.api.URL+path, body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

func (s *edgeSide) mustCall(t testing.TB, method, path string, in, out any) {
	t.Helper()
	if code := s.call(t, method, path, in, out); code >= 300 {
		t.Fatalf("%s %s: status %d", method, path, code)
	}
}

// browser is an HTTP client that reaches every *.localhost name at the
// side's public listener, and keeps cookies.
func (s *edgeSide) browser(t testing.TB) *http.Client {
	t.Helper()
	addr := s.public.Listener.Addr().String()
	d := &net.Dialer{}
	return &http.Client{
		Jar: accesstest.Jar(),
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			if h, _, _ := net.SplitHostPort(a); strings.HasSuffix(h, ".localhost") {
				a = addr
			}
			return d.DialContext(ctx, network, a)
		}},
		Timeout: 30 * time.Second,
	}
}

// appURL is the URL of a path on an app hostname at the side.
func (s *edgeSide) appURL(host, path string) string {
	_, port, _ := net.SplitHostPort(s.public.Listener.Addr().String())
	return "http://" + host + ":" + port + path
}

// get sends a GET as a browser (Accept: text/html) or not.
func get(t testing.TB, c *http.Client, u string, browser bool, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if browser {
		req.Header.Set("Accept", "text/html,application/xhtml+xml")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp
}

func body(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// login opens u in c as a browser, logs in at the provider's form as u,
// and returns the final answer (the origin's, or the edge's refusal).
func login(t testing.TB, c *http.Client, u string, user accesstest.User) *http.Response {
	t.Helper()
	resp, err := accesstest.BrowserLogin(context.Background(), c, u, user)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func decodeSeen(t testing.TB, resp *http.Response) originSeen {
	t.Helper()
	b := body(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("got %d %s, want 200 from the origin", resp.StatusCode, limitString(b, 300))
	}
	var s originSeen
	if err := json.Unmarshal([]byte(b), &s); err != nil {
		t.Fatalf("origin answer at %s %q: %v", resp.Request.URL, limitString(b, 100), err)
	}
	return s
}

// fixture is a provider, an etcd and one side with an IdP and two apps.
type fixture struct {
	idp  *accesstest.Provider
	cli  *clientv3.Client
	side *edgeSide
	app  control.AccessApp // app.localhost: ann's group eng allowed, eve excluded
	adm  control.AccessApp // app.localhost/admin: only ann by email
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureConfig(t, Config{})
}

// testClock is a clock a test moves forward.
type testClock struct{ ahead atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.ahead.Load())) }
func (c *testClock) Advance(d time.Duration) { c.ahead.Add(int64(d)) }

func newFixtureConfig(t testing.TB, cfg Config) *fixture {
	t.Helper()
	p, err := accesstest.Start(ann, bob, eve)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	f := &fixture{idp: p, cli: openStore(t)}
	f.side = startSide(t, f.cli, cfg)
	f.side.mustCall(t, "POST", "/v1/access/idps", control.AccessIdP{
		Name: "test", Issuer: p.Issuer, ClientID: p.ClientID, ClientSecret: p.ClientSecret,
		Scopes: []string{"openid", "email", "profile", "groups"},
	}, nil)
	f.side.mustCall(t, "POST", "/v1/access/apps", control.AccessApp{
		Name: "app", Domain: "app.localhost", Policies: []control.AccessPolicy{
			{Action: "allow", Include: []string{"group:eng"}, Exclude: []string{"email:eve@example.com"}},
		},
	}, &f.app)
	f.side.mustCall(t, "POST", "/v1/access/apps", control.AccessApp{
		Name: "admin", Domain: "app.localhost/Admin", IdP: "test", Policies: []control.AccessPolicy{
			{Action: "allow", Include: []string{"email:ANN@example.com"}},
		},
	}, &f.adm)
	return f
}

func TestLoginFlow(t *testing.T) {
	f := newFixture(t)
	s := f.side
	c := s.browser(t)

	// A client that is not a browser gets 401 JSON, never a login page.
	resp := get(t, c, s.appURL("app.localhost", "/x"), false)
	if b := body(t, resp); resp.StatusCode != 401 || !strings.Contains(b, `"application":"app"`) || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("no session, not a browser: got %d %s, want 401 JSON naming the app", resp.StatusCode, b)
	}

	seen := decodeSeen(t, login(t, c, s.appURL("app.localhost", "/x?q=1"), ann))
	if seen.Path != "/x" || seen.Email != "ann@example.com" {
		t.Errorf("after login: origin saw %+v, want /x for ann", seen)
	}
	if seen.Assertion == "" || seen.Assertion != seen.CFAssertion {
		t.Fatalf("assertion headers: %q / %q, want the same JWT twice", seen.Assertion, seen.CFAssertion)
	}
	// The cookie: HttpOnly, Secure, SameSite=Lax, the app's path.
	u, _ := url.Parse(s.appURL("app.localhost", "/"))
	var cookie *http.Cookie
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == SessionCookie {
			cookie = ck
		}
	}
	if cookie == nil {
		t.Fatal("no session cookie in the jar")
	}
	// The origin gets the assertion, not the session: the cookie is the
	// edge's (the visitor's other cookies pass), and the assertion is no
	// session at the edge. It is signed once for the session.
	if seen.Cookie != "" {
		t.Errorf("the origin saw the cookies %q, want none", seen.Cookie)
	}
	if seen.Assertion == cookie.Value {
		t.Errorf("the origin's assertion is the session itself")
	}
	again := decodeSeen(t, get(t, c, s.appURL("app.localhost", "/y"), false, "Cookie", "theme=dark; "+SessionCookie+"_x=1; other=2"))
	if again.Cookie != "theme=dark; other=2" || again.Assertion != seen.Assertion {
		t.Errorf("second request: origin saw cookies %q and assertion %.20q, want theme and other, and the same assertion", again.Cookie, again.Assertion)
	}
	for _, h := range [][]string{{CFTokenHeader, seen.Assertion}, {"Cookie", SessionCookie + "=" + seen.Assertion}} {
		if resp := get(t, s.browser(t), s.appURL("app.localhost", "/"), false, h...); resp.StatusCode != 401 {
			t.Errorf("the assertion as %s: got %d, want 401", h[0], resp.StatusCode)
		}
	}

	// The origin's check: the JWKS at /cdn-cgi/access/certs, the app's audience.
	v, err := accessverify.New(context.Background(), accessverify.Config{
		TeamName: s.appURL("app.localhost", ""), AUDTags: []string{f.app.AUD}, HTTPClient: c,
	})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := v.Verify(context.Background(), seen.Assertion)
	if err != nil {
		t.Fatalf("verifying the assertion against the JWKS: %v", err)
	}
	if cl.Email != "ann@example.com" || strings.Join(cl.Groups, ",") != "eng,ops" || cl.IdP != "test" {
		t.Errorf("assertion claims %+v, want ann, eng,ops, test", cl)
	}
	vOther, _ := accessverify.New(context.Background(), accessverify.Config{TeamName: s.appURL("app.localhost", ""), AUDTags: []string{f.adm.AUD}, HTTPClient: c})
	if _, err := vOther.Verify(context.Background(), seen.Assertion); err == nil {
		t.Error("the assertion verified for another application's audience")
	}
	// Another team (another etcd, its own keys, the same key ID: keys are
	// named by their rotation period) signs the same claims: refused.
	team2 := startSide(t, openStore(t), Config{})
	now := time.Now()
	k2 := team2.l.st.snap.Load().signer(now)
	if k2.rec.KID != s.l.st.snap.Load().signer(now).rec.KID {
		t.Logf("the two teams' keys have different IDs: %s", k2.rec.KID)
	}
	c2 := testSession(f.app.AUD, "app.localhost", "ann@example.com", now, now.Add(time.Hour))
	c2.ID = ""
	if tok, _ := sign(k2, c2); tok != "" {
		if _, err := v.Verify(context.Background(), tok); err == nil {
			t.Error("an assertion another team signed verified")
		}
	}
	// This team's key, issued for another hostname: refused.
	c3 := testSession(f.app.AUD, "other.localhost", "ann@example.com", now, now.Add(time.Hour))
	if tok, _ := sign(s.l.st.snap.Load().signer(now), c3); tok != "" {
		if _, err := v.Verify(context.Background(), tok); err == nil || !strings.Contains(err.Error(), "issuer") {
			t.Errorf("an assertion issued for another hostname: %v, want refused for its issuer", err)
		}
	}

	// The same browser reaches the admin app (another audience) only after
	// logging in to it; ann may.
	resp = get(t, c, s.appURL("app.localhost", "/admin/panel"), true)
	if b := body(t, resp); !strings.Contains(b, `name="username"`) {
		t.Fatalf("admin app with the app's session: got %d %s, want a new login", resp.StatusCode, limitString(b, 200))
	}
	seen = decodeSeen(t, login(t, c, s.appURL("app.localhost", "/admin/panel"), ann))
	if seen.Email != "ann@example.com" {
		t.Errorf("admin after login: %+v", seen)
	}
	// The path is matched cleaned and without case.
	for _, p := range []string{"/ADMIN/x", "/x/../admin", "//admin"} {
		resp := get(t, s.browser(t), s.appURL("app.localhost", p), false)
		if b := body(t, resp); resp.StatusCode != 401 || !strings.Contains(b, `"application":"admin"`) {
			t.Errorf("%s without a session: got %d %s, want 401 for admin", p, resp.StatusCode, b)
		}
	}

	// Logout clears the sessions: the next visit logs in again.
	if resp := get(t, c, s.appURL("app.localhost", "/.adit/logout"), true); resp.StatusCode != 200 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	resp = get(t, c, s.appURL("app.localhost", "/x"), true)
	if b := body(t, resp); !strings.Contains(b, `name="username"`) {
		t.Fatalf("after logout: got %d, want the login form", resp.StatusCode)
	}
	if got := testutil.ToFloat64(s.l.m.logins.WithLabelValues("app", "ok")); got != 1 {
		t.Errorf("logins ok for app: %v, want 1", got)
	}
}

func TestDeniedUser(t *testing.T) {
	f := newFixture(t)
	s := f.side
	for _, u := range []accesstest.User{bob, eve} {
		c := s.browser(t)
		resp := login(t, c, s.appURL("app.localhost", "/"), u)
		b := body(t, resp)
		rid := resp.Header.Get(layer.RequestIDHeader)
		if resp.StatusCode != 403 || !strings.Contains(b, "&#34;app&#34;") || rid == "" || !strings.Contains(b, rid) || !strings.Contains(b, u.Email) {
			t.Errorf("%s: got %d %s, want a 403 page naming the app, the user and the request ID", u.Name, resp.StatusCode, limitString(b, 400))
		}
		// Not a browser, with the same cookie: 403 JSON.
		resp = get(t, c, s.appURL("app.localhost", "/"), false)
		if b := body(t, resp); resp.StatusCode != 403 || !strings.Contains(b, `"request_id"`) {
			t.Errorf("%s as a script: got %d %s, want 403 JSON", u.Name, resp.StatusCode, b)
		}
	}
	if got := testutil.ToFloat64(s.l.m.decisions.WithLabelValues("app", "deny")); got != 4 {
		t.Errorf("deny decisions: %v, want 4", got)
	}
}

// TestTokensRefused: forged, expired, wrong-audience and other-app JWTs
// get no further than no JWT at all, as cookie or as header.
func TestTokensRefused(t *testing.T) {
	f := newFixture(t)
	s := f.side
	snap := s.l.st.snap.Load()
	k := snap.signer(time.Now())
	now := time.Now()
	mk := func(aud string, iat, exp time.Time, email string) string {
		tok, err := sign(k, testSession(aud, "app.localhost", email, iat, exp))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	valid := mk(f.app.AUD, now, now.Add(time.Hour), "ann@example.com")
	forgedKey, _ := newKeyRecord(k.rec.KID, now, now) // same key ID, other key
	fk, _ := parseRecord(store.AccessKeyKey("x"), mustJSON(forgedKey))
	forged, _ := sign(fk.(*signingKey), testSession(f.app.AUD, "app.localhost", "ann@example.com", now, now.Add(time.Hour)))
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + strings.TrimRight(parts[1], "=") + "x." + parts[2]
	cases := []struct {
		name, tok string
		ok        bool
	}{
		{"valid", valid, true},
		{"forged", forged, false},
		{"tampered", tampered, false},
		{"expired", mk(f.app.AUD, now.Add(-2*time.Hour), now.Add(-time.Minute), "ann@example.com"), false},
		{"wrong audience", mk("0123", now, now.Add(time.Hour), "ann@example.com"), false},
		{"other app", mk(f.adm.AUD, now, now.Add(time.Hour), "ann@example.com"), false},
		{"no email", mk(f.app.AUD, now, now.Add(time.Hour), ""), false},
		{"no session ID (an origin's assertion)", func() string {
			c := testSession(f.app.AUD, "app.localhost", "ann@example.com", now, now.Add(time.Hour))
			c.ID = ""
			tok, _ := sign(k, c)
			return tok
		}(), false},
		{"issued on another hostname", func() string {
			tok, _ := sign(k, testSession(f.app.AUD, "other.localhost", "ann@example.com", now, now.Add(time.Hour)))
			return tok
		}(), false},
		{"garbage", "a.b.c", false},
	}
	c := s.browser(t)
	for _, tc := range cases {
		for _, how := range []string{"header", "cookie"} {
			var resp *http.Response
			if how == "header" {
				resp = get(t, c, s.appURL("app.localhost", "/"), false, CFTokenHeader, tc.tok)
			} else {
				resp = get(t, c, s.appURL("app.localhost", "/"), false, "Cookie", SessionCookie+"="+tc.tok)
			}
			b := body(t, resp)
			if got := resp.StatusCode == 200; got != tc.ok {
				t.Errorf("%s as %s: got %d %s, want ok=%v", tc.name, how, resp.StatusCode, limitString(b, 200), tc.ok)
			}
		}
	}
}

// testSession is the claims of a session for aud on host.
func testSession(aud, host, email string, iat, exp time.Time) claims {
	return claims{
		Claims: jwt.Claims{
			Issuer: "http://" + host, Subject: email, Audience: jwt.Audience{aud}, ID: randomString(16),
			IssuedAt: jwt.NewNumericDate(iat), NotBefore: jwt.NewNumericDate(iat), Expiry: jwt.NewNumericDate(exp),
		},
		Type: "app", Email: email, Groups: []string{"eng"},
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// TestClientAssertionStripped: a client never sends its own assertion to
// an origin, with or without an application on the hostname.
func TestClientAssertionStripped(t *testing.T) {
	f := newFixture(t)
	s := f.side
	s.mustCall(t, "POST", "/v1/access/apps/app/policies", control.AccessPolicy{Action: "bypass", Include: []string{"everyone"}}, nil)
	c := s.browser(t)
	for _, host := range []string{"app.localhost", "open.localhost"} {
		seen := decodeSeen(t, get(t, c, s.appURL(host, "/"), false, AssertionHeader, "forged", CFAssertionHeader, "forged"))
		if host == "app.localhost" {
			req, _ := http.NewRequest("GET", s.appURL(host, "/"), nil)
			req.Header["Cf_Access_Jwt_Assertion"] = []string{"forged"}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if b := body(t, resp); resp.StatusCode != 200 || strings.Contains(b, "forged") {
				t.Errorf("with a look-alike header: %d %s, want 200 without it", resp.StatusCode, b)
			}
		}
		if seen.Assertion != "" || seen.CFAssertion != "" {
			t.Errorf("%s: origin saw %+v, want no client-sent assertion", host, seen)
		}
	}
}

// TestServiceTokens: a token works with either header names, its secret
// never reaches the origin, and a revoked token is refused by every edge
// on the same etcd within 2 s.
func TestServiceTokens(t *testing.T) {
	f := newFixture(t)
	a := f.side
	b := startSide(t, f.cli, Config{})
	var ci control.AccessServiceTokenCreated
	a.mustCall(t, "POST", "/v1/access/service-tokens", control.CreateServiceTokenRequest{Name: "ci", Duration: "1h"}, &ci)
	if len(ci.ClientSecret) != 64 || !strings.HasSuffix(ci.ClientID, ".access") {
		t.Fatalf("created token %+v", ci)
	}
	var list []control.AccessServiceToken
	a.mustCall(t, "GET", "/v1/access/service-tokens", nil, &list)
	if raw, _ := json.Marshal(list); strings.Contains(string(raw), ci.ClientSecret) || len(list) != 1 {
		t.Fatalf("list %s shows the secret or not one token", raw)
	}
	a.mustCall(t, "POST", "/v1/access/apps/app/policies", control.AccessPolicy{Action: "service_auth", Include: []string{"service_token:ci"}}, nil)

	for i, s := range []*edgeSide{a, b} {
		c := s.browser(t)
		waitUntil(t, "the policy on every side", func() bool {
			resp := get(t, c, s.appURL("app.localhost", "/"), false, ClientIDHeader, ci.ClientID, ClientSecretHeader, ci.ClientSecret)
			body(t, resp)
			return resp.StatusCode == 200
		})
		seen := decodeSeen(t, get(t, c, s.appURL("app.localhost", "/"), false, CFClientIDHeader, ci.ClientID, CFClientSecretHeader, ci.ClientSecret))
		if seen.Token != "ci" || seen.Assertion == "" || seen.HasSecret {
			t.Errorf("side %d: origin saw %+v, want token ci, an assertion, no secret", i, seen)
		}
		resp := get(t, c, s.appURL("app.localhost", "/"), false, ClientIDHeader, ci.ClientID, ClientSecretHeader, strings.Repeat("0", 64))
		if b := body(t, resp); resp.StatusCode != 403 {
			t.Errorf("side %d, wrong secret: got %d %s, want 403", i, resp.StatusCode, b)
		}
	}

	// Revoke on side a; side b refuses within 2 s.
	start := time.Now()
	if code := a.call(t, "DELETE", "/v1/access/service-tokens/ci", nil, nil); code != 204 {
		t.Fatalf("revoke: %d", code)
	}
	c := b.browser(t)
	refused := func() bool {
		resp := get(t, c, b.appURL("app.localhost", "/"), false, ClientIDHeader, ci.ClientID, ClientSecretHeader, ci.ClientSecret)
		body(t, resp)
		return resp.StatusCode == 403
	}
	if !poll.Within(2*time.Second, refused) {
		t.Fatalf("revoked token still accepted by the other side after %v", time.Since(start))
	}
	t.Logf("revocation reached the other side in %v", time.Since(start))
	resp := get(t, a.browser(t), a.appURL("app.localhost", "/"), false, ClientIDHeader, ci.ClientID, ClientSecretHeader, ci.ClientSecret)
	if body(t, resp); resp.StatusCode != 403 {
		t.Errorf("revoking side: got %d, want 403", resp.StatusCode)
	}
}

var waitUntil = poll.Until

// TestDecide covers every rule kind and action.
func TestDecide(t *testing.T) {
	tok := &serviceToken{rec: tokenRecord{AccessServiceToken: control.AccessServiceToken{Name: "ci"}}}
	other := &serviceToken{rec: tokenRecord{AccessServiceToken: control.AccessServiceToken{Name: "other"}}}
	annC := &claims{Email: "Ann@Example.com", Groups: []string{"eng"}}
	bobC := &claims{Email: "bob@other.org", Groups: []string{"sales"}}
	lan := netip.MustParseAddr("10.1.2.3")
	wan := netip.MustParseAddr("203.0.113.9")
	type sub = subject
	cases := []struct {
		name     string
		policies []control.AccessPolicy
		s        sub
		want     string
	}{
		{"no policies, a person", nil, sub{user: annC}, decisionDeny},
		{"no policies, nobody", nil, sub{}, decisionLogin},
		{"email", []control.AccessPolicy{{Action: "allow", Include: []string{"email:ann@example.com"}}}, sub{user: annC}, decisionAllow},
		{"email other", []control.AccessPolicy{{Action: "allow", Include: []string{"email:ann@example.com"}}}, sub{user: bobC}, decisionDeny},
		{"email_domain", []control.AccessPolicy{{Action: "allow", Include: []string{"email_domain:example.com"}}}, sub{user: annC}, decisionAllow},
		{"email_domain other", []control.AccessPolicy{{Action: "allow", Include: []string{"email_domain:example.com"}}}, sub{user: bobC}, decisionDeny},
		{"group", []control.AccessPolicy{{Action: "allow", Include: []string{"group:eng"}}}, sub{user: annC}, decisionAllow},
		{"group other", []control.AccessPolicy{{Action: "allow", Include: []string{"group:eng"}}}, sub{user: bobC}, decisionDeny},
		{"everyone needs a login", []control.AccessPolicy{{Action: "allow", Include: []string{"everyone"}}}, sub{}, decisionLogin},
		{"everyone", []control.AccessPolicy{{Action: "allow", Include: []string{"everyone"}}}, sub{user: bobC}, decisionAllow},
		{"include is OR", []control.AccessPolicy{{Action: "allow", Include: []string{"email:x@y.z", "group:sales"}}}, sub{user: bobC}, decisionAllow},
		{"require is AND", []control.AccessPolicy{{Action: "allow", Include: []string{"everyone"}, Require: []string{"group:eng", "ip:10.0.0.0/8"}}}, sub{user: annC, ip: wan}, decisionDeny},
		{"require met", []control.AccessPolicy{{Action: "allow", Include: []string{"everyone"}, Require: []string{"group:eng", "ip:10.0.0.0/8"}}}, sub{user: annC, ip: lan}, decisionAllow},
		{"exclude is NOT", []control.AccessPolicy{{Action: "allow", Include: []string{"everyone"}, Exclude: []string{"email:ann@example.com"}}}, sub{user: annC}, decisionDeny},
		{"deny first", []control.AccessPolicy{{Action: "deny", Include: []string{"ip:10.0.0.0/8"}}, {Action: "allow", Include: []string{"everyone"}}}, sub{user: annC, ip: lan}, decisionDeny},
		{"allow first", []control.AccessPolicy{{Action: "allow", Include: []string{"everyone"}}, {Action: "deny", Include: []string{"ip:10.0.0.0/8"}}}, sub{user: annC, ip: lan}, decisionAllow},
		{"bypass by ip", []control.AccessPolicy{{Action: "bypass", Include: []string{"ip:10.1.2.3"}}}, sub{ip: lan}, decisionBypass},
		{"bypass before deny", []control.AccessPolicy{{Action: "deny", Include: []string{"everyone"}}, {Action: "bypass", Include: []string{"ip:10.0.0.0/8"}}}, sub{user: annC, ip: lan}, decisionBypass},
		{"bypass other ip", []control.AccessPolicy{{Action: "bypass", Include: []string{"ip:10.0.0.0/8"}}}, sub{ip: wan}, decisionLogin},
		{"service_token", []control.AccessPolicy{{Action: "service_auth", Include: []string{"service_token:ci"}}}, sub{service: tok}, decisionServiceAuth},
		{"service_token other", []control.AccessPolicy{{Action: "service_auth", Include: []string{"service_token:ci"}}}, sub{service: other}, decisionDeny},
		{"any_valid_service_token", []control.AccessPolicy{{Action: "service_auth", Include: []string{"any_valid_service_token"}}}, sub{service: other}, decisionServiceAuth},
		{"service_auth ignores a person", []control.AccessPolicy{{Action: "service_auth", Include: []string{"email:ann@example.com"}}}, sub{user: annC}, decisionDeny},
		{"allow ignores a service token", []control.AccessPolicy{{Action: "allow", Include: []string{"any_valid_service_token"}}}, sub{service: tok}, decisionDeny},
		{"service_auth with ip require", []control.AccessPolicy{{Action: "service_auth", Include: []string{"any_valid_service_token"}, Require: []string{"ip:10.0.0.0/8"}}}, sub{service: tok, ip: wan}, decisionDeny},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := compileApp(control.AccessApp{Name: "a", Domain: "a.example.com", Policies: tc.policies})
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := decide(a, &tc.s); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// TestMatch: the most specific application wins.
func TestMatch(t *testing.T) {
	recs := records{}
	for i, d := range []string{"a.example.com", "a.example.com/api", "a.example.com/api/v2", "*.example.com", "*.example.com/x"} {
		ap, err := compileApp(control.AccessApp{Name: fmt.Sprint("app", i), Domain: d})
		if err != nil {
			t.Fatal(err)
		}
		recs[fmt.Sprint(i)] = ap
	}
	snap := build(recs, 1)
	for _, tc := range []struct{ host, path, want string }{
		{"a.example.com", "/", "a.example.com"},
		{"a.example.com", "/api", "a.example.com/api"},
		{"a.example.com", "/api/v2/x", "a.example.com/api/v2"},
		{"a.example.com", "/apix", "a.example.com"},
		{"a.example.com", "/x", "a.example.com"},
		{"b.example.com", "/x/y", "*.example.com/x"},
		{"b.example.com", "/", "*.example.com"},
		{"example.com", "/", ""},
		{"c.b.example.com", "/", ""},
	} {
		exact, wild := snap.hostApps(tc.host)
		got := ""
		if a := match(exact, wild, tc.path); a != nil {
			got = a.rec.Domain
		}
		if got != tc.want {
			t.Errorf("%s%s: got %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}
}

// TestKeyRotation: a rotated key signs new sessions once active, and
// sessions the old one signed stay valid.
func TestKeyRotation(t *testing.T) {
	clock := new(testClock)
	f := newFixtureConfig(t, Config{Now: clock.Now})
	s := f.side
	c := s.browser(t)
	before := decodeSeen(t, login(t, c, s.appURL("app.localhost", "/"), ann)).Assertion
	u, _ := url.Parse(s.appURL("app.localhost", "/"))
	var old string
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == SessionCookie {
			old = ck.Value
		}
	}
	var k control.AccessKey
	s.mustCall(t, "POST", "/v1/access/keys", nil, &k)
	var set struct{ Keys []struct{ Kid string } }
	resp := get(t, c, s.appURL("app.localhost", "/.adit/certs"), false)
	json.Unmarshal([]byte(body(t, resp)), &set)
	if len(set.Keys) != 2 || set.Keys[1].Kid != k.KID {
		t.Fatalf("JWKS after rotation: %+v, want 2 keys, the new one last", set)
	}
	if got := snapKID(s.l.st.snap.Load().signer(time.Now())); got == k.KID {
		t.Errorf("the new key signs before it is active")
	}
	if got := snapKID(s.l.st.snap.Load().signer(time.Now().Add(keyActivation))); got != k.KID {
		t.Errorf("signer once active: %s, want %s", got, k.KID)
	}
	clock.Advance(keyActivation)
	seen := decodeSeen(t, get(t, s.browser(t), s.appURL("app.localhost", "/"), false, CFTokenHeader, old))
	if seen.Email != "ann@example.com" {
		t.Errorf("old session after rotation: %+v", seen)
	}
	// The session's assertion is signed again, by the new key.
	if seen.Assertion == before || kidOfJWT(t, seen.Assertion) != k.KID {
		t.Errorf("assertion after rotation signed by %s, want a new one by %s", kidOfJWT(t, seen.Assertion), k.KID)
	}
}

// kidOfJWT is the key ID in a JWT's header.
func kidOfJWT(t testing.TB, tok string) string {
	t.Helper()
	h, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatalf("JWT header %q: %v", h, err)
	}
	var v struct{ Kid string }
	json.Unmarshal(b, &v)
	return v.Kid
}

func snapKID(k *signingKey) string {
	if k == nil {
		return ""
	}
	return k.rec.KID
}

// TestAPIValidation: bad input is refused naming the field.
func TestAPIValidation(t *testing.T) {
	cli := openStore(t)
	s := startSide(t, cli, Config{})
	for _, tc := range []struct {
		path string
		in   any
		want int
	}{
		{"/v1/access/idps", control.AccessIdP{Name: "x", Issuer: "http://example.com", ClientID: "c"}, 400},
		{"/v1/access/idps", control.AccessIdP{Name: "bad name", Issuer: "https://example.com", ClientID: "c"}, 400},
		{"/v1/access/apps", control.AccessApp{Name: "a", Domain: "a.example.com", IdP: "nope"}, 400},
		{"/v1/access/apps", control.AccessApp{Name: "a", Domain: "a.example.com/../x"}, 400},
		{"/v1/access/apps", control.AccessApp{Name: "a", Domain: "a.example.com", SessionDuration: "forever"}, 400},
		{"/v1/access/apps", control.AccessApp{Name: "a", Domain: "a.example.com", Policies: []control.AccessPolicy{{Action: "maybe", Include: []string{"everyone"}}}}, 400},
		{"/v1/access/apps", control.AccessApp{Name: "a", Domain: "a.example.com", Policies: []control.AccessPolicy{{Action: "allow", Include: []string{"mail:x"}}}}, 400},
		{"/v1/access/apps", control.AccessApp{Name: "a", Domain: "a.example.com"}, 201},
		{"/v1/access/apps", control.AccessApp{Name: "b", Domain: "A.example.com"}, 409},
		{"/v1/access/apps", control.AccessApp{Name: "a", Domain: "b.example.com"}, 409},
		{"/v1/access/service-tokens", control.CreateServiceTokenRequest{Name: "t", Duration: "1s"}, 400},
	} {
		if got := s.call(t, "POST", tc.path, tc.in, nil); got != tc.want {
			t.Errorf("POST %s %+v: %d, want %d", tc.path, tc.in, got, tc.want)
		}
	}
	if got := s.call(t, "DELETE", "/v1/access/apps/a/policies/1", nil, nil); got != 404 {
		t.Errorf("deleting a missing policy: %d, want 404", got)
	}
}

// BenchmarkLayer is the layer's cost per request: a valid session cookie
// (the cached path) and a hostname without an application.
func BenchmarkLayer(b *testing.B) {
	cli := openStore(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := New(layer.Deps{Ctx: ctx, Etcd: cli, Logger: slog.New(slog.DiscardHandler), Metrics: prometheus.NewRegistry()}, Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	var a control.AccessApp
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/access/apps", strings.NewReader(`{"name":"app","domain":"app.example.com","policies":[{"action":"allow","include":["email_domain:example.com"]}]}`))
	if err := l.createApp(rec, req); err != nil {
		b.Fatal(err)
	}
	json.Unmarshal(rec.Body.Bytes(), &a)
	now := time.Now()
	tok, _ := sign(l.st.snap.Load().signer(now), testSession(a.AUD, "app.example.com", "ann@example.com", now, now.Add(time.Hour)))
	var passed int
	h := l.Wrap(layer.HandlerFunc(func(w http.ResponseWriter, r *http.Request, req *layer.Request) { passed++ }))
	for _, tc := range []struct{ name, host string }{{"session", "app.example.com"}, {"no-app", "other.example.com"}} {
		b.Run(tc.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "http://"+tc.host+"/x", nil)
			cookie := []string{SessionCookie + "=" + tok}
			w := httptest.NewRecorder()
			passed = 0
			b.ReportAllocs()
			for b.Loop() {
				r.Header["Cookie"] = cookie // the layer takes it out
				h.ServeRouted(w, r, &layer.Request{ID: "x", Host: tc.host, ClientIP: netip.MustParseAddr("127.0.0.1")})
			}
			if passed != b.N {
				b.Fatalf("%d of %d requests passed", passed, b.N)
			}
		})
	}
}

// TestStripSessionCookies: the session cookies leave, the others stay.
func TestStripSessionCookies(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []string // nil: no Cookie field
	}{
		{"only the session", []string{SessionCookie + "=abc"}, nil},
		{"a path application's session", []string{SessionCookie + "_0123456789ab=abc"}, nil},
		{"others kept", []string{"a=1; " + SessionCookie + "=abc;b=2"}, []string{"a=1; b=2"}},
		{"a look-alike name kept", []string{SessionCookie + "X=1"}, []string{SessionCookie + "X=1"}},
		{"several fields", []string{SessionCookie + "=abc", "a=1", SessionCookie + "_x=y; c=3"}, []string{"a=1", "c=3"}},
		{"none", []string{"a=1"}, []string{"a=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Cookie": slices.Clone(tc.in)}
			stripSessionCookies(h)
			if got := h["Cookie"]; !slices.Equal(got, tc.want) || (tc.want == nil && got != nil) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
