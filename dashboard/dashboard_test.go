package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/adit-dev/adit/access"
	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
)

// fakeSessions is an in-memory Sessions for the handler's unit tests (the
// real one, over etcd, is tested in controlserver and end to end in e2e).
type fakeSessions struct {
	token   string
	live    map[string]bool
	deleted []string
}

func (f *fakeSessions) CreateSession(_ context.Context, token string) (string, time.Time, error) {
	if token != f.token {
		return "", time.Time{}, control.Errorf(control.ErrUnauthorized, "that is not a valid API token")
	}
	f.live["adits_v"] = true
	return "adits_v", time.Now().Add(time.Hour), nil
}

func (f *fakeSessions) DeleteSession(_ context.Context, v string) error {
	delete(f.live, v)
	f.deleted = append(f.deleted, v)
	return nil
}

func (f *fakeSessions) CreateSSOSession(_ context.Context, idp, email string, _ []string) (string, time.Time, error) {
	f.live["adits_sso_"+idp+"_"+email] = true
	return "adits_sso", time.Now().Add(time.Hour), nil
}

// fakeSSO is an identity provider's login that lets ann in and no one else.
type fakeSSO struct{ callbacks []string }

func (f *fakeSSO) IdP() string { return "corp" }

func (f *fakeSSO) Start(w http.ResponseWriter, r *http.Request, callback string) error {
	f.callbacks = append(f.callbacks, callback)
	http.Redirect(w, r, "https://idp.example/auth", http.StatusFound)
	return nil
}

func (f *fakeSSO) Finish(w http.ResponseWriter, r *http.Request, callback string) (access.AdminIdentity, error) {
	f.callbacks = append(f.callbacks, callback)
	if r.URL.Query().Get("code") != "ann" {
		return access.AdminIdentity{}, errors.New("You are signed in to \"corp\" as bob@example.com, who may not administer this edge.")
	}
	return access.AdminIdentity{IdP: "corp", Email: "ann@example.com"}, nil
}

func newTest(t *testing.T) (*Handler, *fakeSessions) {
	t.Helper()
	fs := &fakeSessions{token: "adit_good", live: map[string]bool{}}
	h, err := New(Config{Sessions: fs})
	if err != nil {
		t.Fatal(err)
	}
	return h, fs
}

func TestStatic(t *testing.T) {
	h, _ := newTest(t)
	for _, tc := range []struct {
		path, wantType string
		want           int
	}{
		{"/", "text/html", 200},
		{"/app.js", "text/javascript", 200},
		{"/style.css", "text/css", 200},
		{"/favicon.svg", "image/svg+xml", 200},
		{"/index.html", "", 404},
		{"/nope", "", 404},
		{"/static/app.js", "", 404},
		{"/dashboard.go", "", 404},
		{"/../go.mod", "", 307}, // ServeMux's redirect to the clean path, /go.mod: 404
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.want || !strings.HasPrefix(rec.Header().Get("Content-Type"), tc.wantType) {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, rec.Code, rec.Header().Get("Content-Type"), tc.want, tc.wantType)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", tc.path, csp)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", tc.path)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", rec.Code)
	}
}

func TestLogin(t *testing.T) {
	for _, tc := range []struct {
		name, body, ctype string
		csrf              bool
		want              int
		wantErr           string
	}{
		{"good", `{"token":"adit_good"}`, "application/json", true, 200, ""},
		{"spaces around", `{"token":"  adit_good\n"}`, "application/json", true, 200, ""},
		{"wrong token", `{"token":"adit_bad"}`, "application/json", true, 401, "not a valid API token"},
		{"no CSRF header", `{"token":"adit_good"}`, "application/json", false, 403, controlserver.CSRFHeader},
		{"a form post", `token=adit_good`, "application/x-www-form-urlencoded", true, 415, "JSON"},
		{"empty token", `{"token":""}`, "application/json", true, 400, "token: paste"},
		{"unknown field", `{"token":"adit_good","x":1}`, "application/json", true, 400, "unknown field"},
		{"two objects", `{"token":"adit_good"}{}`, "application/json", true, 400, "more data"},
		{"too big", `{"token":"` + strings.Repeat("a", 5000) + `"}`, "application/json", true, 413, "larger"},
		{"control character", `{"token":"adit\u0000good"}`, "application/json", true, 400, "printable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := newTest(t)
			req := httptest.NewRequest("POST", "/session", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ctype)
			if tc.csrf {
				req.Header.Set(controlserver.CSRFHeader, "1")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var eb control.ErrorBody
			json.Unmarshal(rec.Body.Bytes(), &eb)
			if rec.Code != tc.want || !strings.Contains(eb.Error, tc.wantErr) {
				t.Fatalf("got %d %q, want %d %q", rec.Code, eb.Error, tc.want, tc.wantErr)
			}
			cookies := rec.Result().Cookies()
			if tc.want != 200 {
				if len(cookies) != 0 {
					t.Errorf("a refused login set cookies %v", cookies)
				}
				return
			}
			if len(cookies) != 1 {
				t.Fatalf("cookies %v, want the session cookie", cookies)
			}
			c := cookies[0]
			if c.Name != controlserver.SessionCookie || c.Value != "adits_v" || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
				t.Errorf("session cookie %+v, want HttpOnly, Secure, SameSite=Strict, Path=/, no Domain", c)
			}
		})
	}
}

func TestLogout(t *testing.T) {
	h, fs := newTest(t)
	fs.live["adits_v"] = true
	req := httptest.NewRequest("DELETE", "/session", nil)
	req.AddCookie(&http.Cookie{Name: controlserver.SessionCookie, Value: "adits_v"})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 403 || fs.live["adits_v"] == false {
		t.Fatalf("logout without the CSRF header: %d, session live %v; want 403, still live", rec.Code, fs.live["adits_v"])
	}
	req.Header.Set(controlserver.CSRFHeader, "1")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 204 || fs.live["adits_v"] {
		t.Fatalf("logout: %d, session live %v; want 204, ended", rec.Code, fs.live["adits_v"])
	}
	cs := rec.Result().Cookies()
	if len(cs) != 1 || cs[0].Name != controlserver.SessionCookie || cs[0].MaxAge >= 0 {
		t.Errorf("logout cookies %v, want the session cookie cleared", cs)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/session", nil))
	if rec.Code != 405 {
		t.Errorf("GET /session: %d, want 405", rec.Code)
	}
}

// TestDocumented: docs/openapi.yaml describes the session and SSO endpoints.
func TestDocumented(t *testing.T) {
	data, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	problems, err := controlserver.CheckDocumented(data, "dashboard", []controlserver.Endpoint{{Pattern: "POST /session"}, {Pattern: "DELETE /session"},
		{Pattern: "GET /session/sso"}, {Pattern: "GET /.adit/login"}, {Pattern: "GET /.adit/callback"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// TestNoInlineCode: the page loads only its own files, as the CSP demands
// (an inline script or style would be refused by the browser).
func TestNoInlineCode(t *testing.T) {
	h, _ := newTest(t)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	page, _ := io.ReadAll(rec.Body)
	for _, bad := range []string{"<script>", "<style", " style=", "onclick=", "javascript:"} {
		if strings.Contains(string(page), bad) {
			t.Errorf("index.html has %q", bad)
		}
	}
	js, err := static.ReadFile("static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "localStorage", "sessionStorage"} {
		if strings.Contains(string(js), bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
}

func FuzzParseLogin(f *testing.F) {
	for _, s := range []string{`{"token":"adit_x"}`, `{"token":""}`, `{}`, `{"token":"a b"}`, `{"token":1}`, `[]`, `{"token":"adit_x"} {}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := parseLogin(body)
		if err != nil {
			return
		}
		if tok == "" || len(tok) > 512 || strings.ContainsAny(tok, " \t\r\n\x00\x7f") {
			t.Fatalf("parseLogin accepted %q", tok)
		}
		// What was accepted reads back the same.
		again, _ := json.Marshal(loginRequest{Token: tok})
		if tok2, err := parseLogin(again); err != nil || tok2 != tok {
			t.Fatalf("round trip of %q: %q, %v", tok, tok2, err)
		}
	})
}

// TestSSO: the login page's identity provider, the start of its flow and
// the callback's two ends (a session for an allowed person, the login page
// with the reason for anyone else), and all of it off without one.
func TestSSO(t *testing.T) {
	do := func(h *Handler, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "https://admin.example:7845"+path, nil))
		return rec
	}
	off, _ := newTest(t)
	if rec := do(off, "/session/sso"); rec.Code != http.StatusNotFound {
		t.Errorf("without SSO, GET /session/sso: %d, want 404", rec.Code)
	}
	for _, p := range []string{"/.adit/login", "/.adit/callback?code=ann"} {
		rec := do(off, p)
		if loc := rec.Header().Get("Location"); rec.Code != http.StatusFound || !strings.HasPrefix(loc, "/?sso_error=") {
			t.Errorf("without SSO, GET %s: %d to %q, want the login page with the reason", p, rec.Code, loc)
		}
		if len(rec.Result().Cookies()) != 0 {
			t.Errorf("without SSO, GET %s set %v", p, rec.Result().Cookies())
		}
	}

	sso := &fakeSSO{}
	fs := &fakeSessions{live: map[string]bool{}}
	h, err := New(Config{Sessions: fs, SSO: sso})
	if err != nil {
		t.Fatal(err)
	}
	rec := do(h, "/session/sso")
	var info ssoInfoResponse
	if err := json.NewDecoder(rec.Body).Decode(&info); err != nil || rec.Code != 200 || info.IdP != "corp" || info.LoginURL != "/.adit/login" {
		t.Errorf("GET /session/sso: %d %+v %v", rec.Code, info, err)
	}
	if rec := do(h, "/.adit/login"); rec.Code != http.StatusFound || rec.Header().Get("Location") != "https://idp.example/auth" {
		t.Errorf("GET /.adit/login: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	rec = do(h, "/.adit/callback?code=bob")
	if loc := rec.Header().Get("Location"); rec.Code != http.StatusFound || !strings.Contains(loc, "may+not+administer") || len(rec.Result().Cookies()) != 0 {
		t.Errorf("a refused callback: %d to %q, cookies %v", rec.Code, loc, rec.Result().Cookies())
	}
	rec = do(h, "/.adit/callback?code=ann")
	cs := rec.Result().Cookies()
	if rec.Code != http.StatusFound || rec.Header().Get("Location") != "/" || len(cs) != 1 || cs[0].Name != controlserver.SessionCookie ||
		cs[0].Value != "adits_sso" || !cs[0].HttpOnly || !cs[0].Secure || cs[0].SameSite != http.SameSiteStrictMode {
		t.Errorf("an allowed callback: %d to %q, cookies %v", rec.Code, rec.Header().Get("Location"), cs)
	}
	if !fs.live["adits_sso_corp_ann@example.com"] {
		t.Errorf("sessions %v, want ann's", fs.live)
	}
	for _, cb := range sso.callbacks {
		if cb != "https://admin.example:7845/.adit/callback" {
			t.Errorf("callback %q, want the API listener's /.adit/callback", cb)
		}
	}
}
