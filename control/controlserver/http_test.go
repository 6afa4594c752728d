package controlserver

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/pki"
)

// testCA is a throwaway CA and a certificate it signed for 127.0.0.1.
type testCA struct {
	pem  []byte
	leaf tls.Certificate
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	caPEM, caKey, err := pki.NewCA("adit test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := pki.IssueServerCert(caPEM, caKey, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{pem: caPEM, leaf: leaf}
}

// startAPI serves NewHandler over TLS on 127.0.0.1 and returns the server,
// the CA that signed its certificate and the admin token.
func startAPI(t *testing.T, svc *Service) (*httptest.Server, testCA, string) {
	t.Helper()
	ca := newTestCA(t)
	if _, err := svc.EnsureAdminToken(t.Context(), filepath.Join(t.TempDir(), "admin.token")); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(NewHandler(svc, nil))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.leaf}, MinVersion: tls.VersionTLS13}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes a test fails on purpose
	srv.StartTLS()
	t.Cleanup(srv.Close)

	token := NewToken()
	if err := svc.registerToken(t.Context(), token, "test"); err != nil {
		t.Fatal(err)
	}
	return srv, ca, token
}

func TestClient(t *testing.T) {
	t.Parallel()
	svc, cli := newService(t)
	srv, ca, token := startAPI(t, svc)
	c, err := control.NewClient(srv.URL, token, ca.pem)
	if err != nil {
		t.Fatal(err)
	}
	testAPI(t, c, cli)
}

func TestClientErrors(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t)
	srv, ca, token := startAPI(t, svc)
	ctx := t.Context()

	t.Run("unauthorized", func(t *testing.T) {
		for _, tok := range []string{"", "adit_nope"} {
			c, err := control.NewClient(srv.URL, tok, ca.pem)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.ListRoutes(ctx)
			wantErr(t, "token "+tok, err, control.ErrUnauthorized)
		}
	})

	t.Run("untrusted certificate", func(t *testing.T) {
		other := newTestCA(t)
		c, err := control.NewClient(srv.URL, token, other.pem)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ListRoutes(ctx)
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("client trusting another CA: got %v, want a certificate error", err)
		}
	})

	t.Run("messages survive", func(t *testing.T) {
		c, err := control.NewClient(srv.URL, token, ca.pem)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.GetTunnel(ctx, "missing")
		if want := `control: no tunnel named "missing"`; err == nil || err.Error() != want {
			t.Errorf("error = %v, want %q", err, want)
		}
		// Names with characters that need escaping reach the server intact.
		_, err = c.GetTunnel(ctx, "a/b?c")
		if want := `control: no tunnel named "a/b?c"`; err == nil || err.Error() != want {
			t.Errorf("error = %v, want %q", err, want)
		}
		_, err = c.GetTunnel(ctx, "..")
		wantErr(t, `GetTunnel("..")`, err, control.ErrInvalid)
	})

	t.Run("new client", func(t *testing.T) {
		for _, u := range []string{"http://127.0.0.1:1", "127.0.0.1:1", "https://"} {
			if _, err := control.NewClient(u, token, nil); err == nil {
				t.Errorf("NewClient(%q) succeeded, want an error", u)
			}
		}
		if _, err := control.NewClient(srv.URL, token, []byte("not pem")); err == nil {
			t.Error("NewClient with a CA that is not PEM succeeded, want an error")
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		c, err := control.NewClient("https://"+addr, token, ca.pem)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.EdgeInfo(ctx)
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Errorf("EdgeInfo from a dead address: got %v, want an unreachable error", err)
		}
	})

}

// TestHandlerErrors checks the status and body of each kind of error.
func TestHandlerErrors(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t)
	srv, ca, token := startAPI(t, svc)
	c, err := control.NewClient(srv.URL, token, ca.pem)
	if err != nil {
		t.Fatal(err)
	}
	tun, err := svc.CreateTunnel(t.Context(), "web", secret(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.cli.Put(t.Context(), "/adit/connections/"+tun.ID+"/c1", `{"id":"c1"}`); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, method, path, body, token string
		wantStatus                      int
		wantCode                        string
	}{
		{"no token", "GET", "/v1/routes", "", "", 401, "unauthorized"},
		{"bad token", "GET", "/v1/routes", "", "adit_x", 401, "unauthorized"},
		{"unknown endpoint", "GET", "/v1/nope", "", token, 404, "not_found"},
		{"unknown tunnel", "GET", "/v1/tunnels/nope", "", token, 404, "not_found"},
		{"duplicate name", "POST", "/v1/tunnels", `{"name":"web","tunnel_secret":"` + strings.Repeat("QUFB", 11) + `"}`, token, 409, "conflict"},
		{"connected", "DELETE", "/v1/tunnels/web", "", token, 409, "tunnel_connected"},
		{"bad JSON", "POST", "/v1/tunnels", `{"name":`, token, 400, "invalid"},
		{"trailing data", "POST", "/v1/tunnels", `{"name":"x"} {}`, token, 400, "invalid"},
		{"bad base64", "POST", "/v1/tunnels", `{"name":"x","tunnel_secret":"!!"}`, token, 400, "invalid"},
		{"short secret", "POST", "/v1/tunnels", `{"name":"x","tunnel_secret":"QUFB"}`, token, 400, "invalid"},
		{"bad force", "DELETE", "/v1/tunnels/web?force=maybe", "", token, 400, "invalid"},
		{"bad hostname", "PUT", "/v1/routes/a..b", `{"tunnel_id":"web"}`, token, 400, "invalid"},
		{"body too large", "POST", "/v1/tunnels", `{"name":"` + strings.Repeat("x", maxBodyBytes) + `"}`, token, 413, "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := c.HTTPClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body control.ErrorBody
			data, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(data, &body); err != nil {
				t.Fatalf("body %q is not JSON: %v", data, err)
			}
			if resp.StatusCode != tt.wantStatus || body.Code != tt.wantCode || body.Error == "" {
				t.Errorf("got %d %+v, want %d with code %q and a message", resp.StatusCode, body, tt.wantStatus, tt.wantCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
		})
	}
}

// TestInternalErrors checks that an unexpected error is a 500 whose details
// stay in the log, and that the client reports it without a sentinel.
func TestInternalErrors(t *testing.T) {
	var logged bytes.Buffer
	h := &apiHandler{log: newTextLogger(&logged)}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/v1/routes", nil)
	h.writeError(rec, req, errors.New("etcd: secret detail"))
	var body control.ErrorBody
	json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != 500 || body.Code != "internal" || strings.Contains(body.Error, "secret detail") {
		t.Errorf("got %d %+v, want 500, code internal, no detail", rec.Code, body)
	}
	if !strings.Contains(logged.String(), "secret detail") {
		t.Errorf("log = %q, want the detail", logged.String())
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/routes" {
			writeJSON(w, 500, control.ErrorBody{Error: "internal error; the edge's log has the details", Code: "internal"})
			return
		}
		http.Error(w, "bad gateway", http.StatusBadGateway)
	}))
	defer srv.Close()
	c := &control.Client{BaseURL: srv.URL, HTTPClient: srv.Client()}
	_, err := c.ListRoutes(t.Context())
	for _, kind := range []error{control.ErrNotFound, control.ErrConflict, control.ErrTunnelConnected, control.ErrUnauthorized, control.ErrInvalid} {
		if errors.Is(err, kind) {
			t.Errorf("internal error %v matches %v, want no sentinel", err, kind)
		}
	}
	if err == nil || err.Error() != "control: internal error; the edge's log has the details" {
		t.Errorf("internal error = %v, want the server's message", err)
	}
	_, err = c.EdgeInfo(t.Context())
	if err == nil || !strings.Contains(err.Error(), "502") {
		t.Errorf("non-JSON error = %v, want it to mention the status", err)
	}
}

// TestOpenAPIDescribesEveryEndpoint keeps docs/openapi.yaml and the handler in step.
func TestOpenAPIDescribesEveryEndpoint(t *testing.T) {
	data, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Errorf("openapi = %q, want 3.1.x", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		if ops["x-adit-package"] != nil {
			continue // served by another package's Endpoints, which checks them
		}
		for method := range ops {
			if method != "parameters" {
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	for _, r := range (&apiHandler{}).routes() {
		if !documented[r.pattern] {
			t.Errorf("endpoint %s is not in docs/openapi.yaml", r.pattern)
		}
		delete(documented, r.pattern)
	}
	for op := range documented {
		t.Errorf("docs/openapi.yaml describes %s, which the handler does not serve", op)
	}
	// control's TestOpenAPIErrorCodes checks the error codes.
}
