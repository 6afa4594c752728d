package dashboard

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

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

// TestDocumented: docs/openapi.yaml describes the session endpoints.
func TestDocumented(t *testing.T) {
	data, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	problems, err := controlserver.CheckDocumented(data, "dashboard", []controlserver.Endpoint{{Pattern: "POST /session"}, {Pattern: "DELETE /session"}})
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
