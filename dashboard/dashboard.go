// Package dashboard is adit's web dashboard: plain HTML, CSS and
// JavaScript embedded in the binary (no build step), served by the edge on
// its API listener at "/", beside the /v1 API.
//
// A person logs in by pasting an API token once (the edge's admin.token):
// POST /session exchanges it for a session cookie (HttpOnly, Secure,
// SameSite=Strict, named controlserver.SessionCookie; never in a URL),
// DELETE /session logs out. When an identity provider is configured for
// administrators (Config.SSO, access.AdminConfig), the login page also
// offers "Sign in with NAME": GET /.adit/login runs Access's OIDC code
// flow (PKCE, state, nonce; access/admin.go) against that provider, and
// GET /.adit/callback, once the person is found allowed, issues the same
// session cookie. Everything else the dashboard does is a call
// of the same /v1 API the CLI uses, which takes the cookie in the token's
// stead on requests that carry controlserver.CSRFHeader (see
// control/controlserver/sessions.go): the dashboard can do nothing the API
// would refuse the token.
//
// The pages (static/app.js): tunnels and their live connections; a
// tunnel's hostnames and remotely-managed ingress rules (publish,
// unpublish, edit, history, roll back), the validator's errors at the
// field; Access applications, policies, service tokens and identity
// providers; IP rules, rate limits and WAF settings per hostname;
// certificates and their expiry; the edges of the fleet; traffic per
// hostname over the last hour (GET /v1/traffic, the edge's per-minute
// counts) beside the live request log (the `adit tail` stream).
package dashboard

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/adit-dev/adit/access"
	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/internal/logs"
)

//go:embed static
var static embed.FS

// Sessions starts and ends dashboard sessions (*controlserver.Service).
type Sessions interface {
	// CreateSession checks an API token and returns a session cookie
	// value and when it expires; a bad token is control.ErrUnauthorized.
	CreateSession(ctx context.Context, token string) (value string, expires time.Time, err error)
	// DeleteSession ends a session; an unknown one is not an error.
	DeleteSession(ctx context.Context, value string) error
	// CreateSSOSession starts a session for a person who logged in
	// through the administrators' identity provider.
	CreateSSOSession(ctx context.Context, idp, email string, groups []string) (value string, expires time.Time, err error)
}

// SSO logs administrators in through an identity provider
// (*access.AdminLogin). Its errors are sentences for the person.
type SSO interface {
	// IdP is the provider's name, shown on the login page.
	IdP() string
	// Start sends the browser to the provider, which sends it back to
	// callback.
	Start(w http.ResponseWriter, r *http.Request, callback string) error
	// Finish checks the provider's answer (at callback) and returns who
	// logged in, if they may administer the edge.
	Finish(w http.ResponseWriter, r *http.Request, callback string) (access.AdminIdentity, error)
}

// Config configures the dashboard.
type Config struct {
	// Sessions starts and ends sessions. Required.
	Sessions Sessions
	// SSO is the administrators' identity provider. If nil, only an API
	// token logs in.
	SSO SSO
	// Logger receives what fails. If nil, logs are discarded.
	Logger *slog.Logger
}

// Handler serves the dashboard.
type Handler struct {
	cfg   Config
	log   *slog.Logger
	files http.Handler
	mux   *http.ServeMux
}

// securityHeaders go on every answer: the page runs only its own script
// and style, is never framed, and sends no Referer.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	"X-Content-Type-Options":       "nosniff",
	"X-Frame-Options":              "DENY",
	"Referrer-Policy":              "no-referrer",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
}

// New returns the dashboard's handler: the static files at "/" and the
// session endpoints at "/session". Mount it beside the /v1 API.
func New(cfg Config) (*Handler, error) {
	if cfg.Sessions == nil {
		return nil, errors.New("dashboard: Config.Sessions is required")
	}
	log := logs.Component(cfg.Logger, "dashboard") // nil: discard
	sub, err := fs.Sub(static, "static")
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	h := &Handler{cfg: cfg, log: log, files: http.FileServerFS(sub), mux: http.NewServeMux()}
	h.mux.HandleFunc("POST /session", h.login)
	h.mux.HandleFunc("DELETE /session", h.logout)
	h.mux.HandleFunc("/session", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "POST, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "invalid", "use POST /session to log in and DELETE /session to log out")
	})
	h.mux.HandleFunc("GET /session/sso", h.ssoInfo)
	h.mux.HandleFunc("GET /.adit/login", h.ssoStart)
	h.mux.HandleFunc("GET /.adit/callback", h.ssoCallback)
	h.mux.HandleFunc("GET /{$}", h.serveFile)
	for _, name := range []string{"app.js", "style.css", "favicon.svg"} {
		h.mux.HandleFunc("GET /"+name, h.serveFile)
	}
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for k, v := range securityHeaders {
		w.Header().Set(k, v)
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	h.files.ServeHTTP(w, r)
}

// maxLoginBody bounds POST /session's body.
const maxLoginBody = 4 << 10

// loginRequest is the body of POST /session.
type loginRequest struct {
	Token string `json:"token"`
}

// loginResponse answers a login.
type loginResponse struct {
	ExpiresAt time.Time `json:"expires_at"`
}

// parseLogin reads a login body: one JSON object with a token of at most
// 512 printable ASCII characters.
func parseLogin(body []byte) (string, error) {
	var req loginRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return "", fmt.Errorf("request body: %v", err)
	}
	if dec.More() {
		return "", errors.New("request body: more data after the JSON object")
	}
	tok := strings.TrimSpace(req.Token)
	switch {
	case tok == "":
		return "", errors.New("token: paste the API token (the edge's admin.token file)")
	case len(tok) > 512:
		return "", fmt.Errorf("token: %d characters, the limit is 512", len(tok))
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] <= ' ' || tok[i] >= 0x7f {
			return "", fmt.Errorf("token: character %d is not printable ASCII; paste the token alone", i+1)
		}
	}
	return tok, nil
}

// checkCSRF answers 403 unless the request carries CSRFHeader and, with a
// body, is JSON: what a form or link on another site cannot send.
func checkCSRF(w http.ResponseWriter, r *http.Request, withBody bool) bool {
	if r.Header.Get(controlserver.CSRFHeader) == "" {
		writeError(w, http.StatusForbidden, "unauthorized", "the "+controlserver.CSRFHeader+" header is missing (the dashboard's script sends it)")
		return false
	}
	if withBody {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "invalid", "send the token as JSON (Content-Type: application/json)")
			return false
		}
	}
	return true
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if !checkCSRF(w, r, true) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLoginBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "invalid", fmt.Sprintf("request body is larger than %d bytes", maxLoginBody))
		return
	}
	token, err := parseLogin(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	value, expires, err := h.cfg.Sessions.CreateSession(r.Context(), token)
	if err != nil {
		if code, status, ok := control.ErrorCode(err); ok {
			writeError(w, status, code, strings.TrimPrefix(err.Error(), "control: "))
			return
		}
		h.log.Error("dashboard login failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "internal error; the edge's log has the details")
		return
	}
	setSessionCookie(w, value, expires)
	controlserver.WriteJSON(w, http.StatusOK, loginResponse{ExpiresAt: expires})
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if !checkCSRF(w, r, false) {
		return
	}
	if c, err := r.Cookie(controlserver.SessionCookie); err == nil {
		if err := h.cfg.Sessions.DeleteSession(r.Context(), c.Value); err != nil {
			h.log.Error("dashboard logout failed", "err", err)
			writeError(w, http.StatusInternalServerError, "internal", "internal error; the edge's log has the details")
			return
		}
	}
	http.SetCookie(w, &http.Cookie{
		Name: controlserver.SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	w.WriteHeader(http.StatusNoContent)
}

// ssoInfoResponse answers GET /session/sso: what the login page offers.
type ssoInfoResponse struct {
	IdP      string `json:"idp"`
	LoginURL string `json:"login_url"`
}

func (h *Handler) ssoInfo(w http.ResponseWriter, r *http.Request) {
	if h.cfg.SSO == nil {
		writeError(w, http.StatusNotFound, "not_found", "no identity provider is configured for administrators (adit edge --admin-idp)")
		return
	}
	controlserver.WriteJSON(w, http.StatusOK, ssoInfoResponse{IdP: h.cfg.SSO.IdP(), LoginURL: ssoLoginPath})
}

const (
	ssoLoginPath    = "/.adit/login"
	ssoCallbackPath = "/.adit/callback"
)

// ssoCallbackURL is the callback as the browser reaches this listener.
func ssoCallbackURL(r *http.Request) string {
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + r.Host + ssoCallbackPath
}

// ssoFailed sends the browser back to the login page with msg.
func (h *Handler) ssoFailed(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, "/?"+url.Values{"sso_error": {msg}}.Encode(), http.StatusFound)
}

func (h *Handler) ssoStart(w http.ResponseWriter, r *http.Request) {
	if h.cfg.SSO == nil {
		h.ssoFailed(w, r, "No identity provider is configured for administrators; log in with an API token.")
		return
	}
	if err := h.cfg.SSO.Start(w, r, ssoCallbackURL(r)); err != nil {
		h.ssoFailed(w, r, err.Error())
	}
}

func (h *Handler) ssoCallback(w http.ResponseWriter, r *http.Request) {
	if h.cfg.SSO == nil {
		h.ssoFailed(w, r, "No identity provider is configured for administrators; log in with an API token.")
		return
	}
	id, err := h.cfg.SSO.Finish(w, r, ssoCallbackURL(r))
	if err != nil {
		h.ssoFailed(w, r, err.Error())
		return
	}
	value, expires, err := h.cfg.Sessions.CreateSSOSession(r.Context(), id.IdP, id.Email, id.Groups)
	if err != nil {
		if _, _, ok := control.ErrorCode(err); ok {
			h.ssoFailed(w, r, strings.TrimPrefix(err.Error(), "control: "))
			return
		}
		h.log.Error("dashboard SSO login failed", "err", err)
		h.ssoFailed(w, r, "Internal error; the edge's log has the details.")
		return
	}
	setSessionCookie(w, value, expires)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, "/", http.StatusFound)
}

// setSessionCookie sets the session cookie.
func setSessionCookie(w http.ResponseWriter, value string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: controlserver.SessionCookie, Value: value, Path: "/", Expires: expires,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	controlserver.WriteJSON(w, status, control.ErrorBody{Error: msg, Code: code})
}
