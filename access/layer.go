package access

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/adit-dev/adit/edge/layer"
	"github.com/adit-dev/adit/internal/logs"
	"github.com/adit-dev/adit/internal/ratelog"
)

// Header and cookie names.
const (
	// AssertionHeader and CFAssertionHeader carry the signed identity to
	// the origin; a client-sent copy never passes the edge.
	AssertionHeader   = "Adit-Access-Jwt-Assertion"
	CFAssertionHeader = "Cf-Access-Jwt-Assertion"
	// TokenHeader and CFTokenHeader carry a session JWT from a client that
	// is not a browser (`adit access curl|tcp`; cloudflared sends
	// cf-access-token).
	TokenHeader   = "Adit-Access-Token"
	CFTokenHeader = "Cf-Access-Token"
	// The service token headers.
	ClientIDHeader       = "Adit-Access-Client-Id"
	ClientSecretHeader   = "Adit-Access-Client-Secret"
	CFClientIDHeader     = "Cf-Access-Client-Id"
	CFClientSecretHeader = "Cf-Access-Client-Secret"
	// SessionCookie holds the session JWT (cookieName).
	SessionCookie = "Adit_Authorization"
)

// Config tunes the Access layer. The zero value is the default.
type Config struct {
	// KeyRotation is how often the signing key is replaced. If zero, 30
	// days; at least a minute.
	KeyRotation time.Duration
	// HTTPClient talks to identity providers (discovery, keys, code
	// exchange). If nil, one with a 15s timeout and the system roots.
	HTTPClient *http.Client
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
}

// Layer is the Access layer of an edge.
type Layer struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	log    *slog.Logger
	st     *state
	m      *metrics
	wg     sync.WaitGroup
	// rl keeps what any visitor can trigger at will (refusals) from
	// flooding the log: one line per kind per 10s, with the count left
	// out; the metrics count every decision.
	rl *ratelog.Limiter

	// sessions caches verified session JWTs, so a request with a known
	// cookie costs a map lookup instead of a signature check.
	sessions     sync.Map // string → *claims
	sessionCount atomic.Int64
}

// maxCachedSessions bounds the session cache; past it, it starts over.
const maxCachedSessions = 20000

// New builds the Access layer: it loads the Access records, makes sure a
// signing key exists, and watches for changes until deps.Ctx ends or Close.
func New(deps layer.Deps, cfg Config) (*Layer, error) {
	if cfg.KeyRotation == 0 {
		cfg.KeyRotation = 30 * 24 * time.Hour
	}
	if cfg.KeyRotation < time.Minute {
		return nil, fmt.Errorf("access: key rotation %s is shorter than a minute", cfg.KeyRotation)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	log := logs.Component(deps.Logger, "access")
	ctx, cancel := context.WithCancel(deps.Ctx)
	l := &Layer{cfg: cfg, ctx: ctx, cancel: cancel, log: log, rl: ratelog.NewLimiter(10 * time.Second)}
	var err error
	l.st, err = newState(ctx, deps.Etcd, log)
	if err != nil {
		cancel()
		return nil, err
	}
	l.m, err = newMetrics(deps.Metrics)
	if err != nil {
		cancel()
		return nil, err
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.st.run(ctx)
	}()
	kctx, kcancel := context.WithTimeout(ctx, 30*time.Second)
	err = l.maintainKeys(kctx)
	kcancel()
	if err != nil {
		l.Close()
		return nil, err
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.keyLoop(ctx)
	}()
	return l, nil
}

func (l *Layer) now() time.Time {
	if l.cfg.Now != nil {
		return l.cfg.Now()
	}
	return time.Now()
}

// Name implements layer.Layer.
func (l *Layer) Name() string { return "access" }

// Close implements layer.Layer.
func (l *Layer) Close() error {
	l.cancel()
	l.wg.Wait()
	return nil
}

// Wrap implements layer.Layer.
func (l *Layer) Wrap(next layer.Handler) layer.Handler {
	return layer.HandlerFunc(func(w http.ResponseWriter, r *http.Request, req *layer.Request) {
		l.serve(w, r, req, next)
	})
}

// serve is the layer for one request.
func (l *Layer) serve(w http.ResponseWriter, r *http.Request, req *layer.Request, next layer.Handler) {
	// Only the edge says who a visitor is.
	h := r.Header
	delete(h, AssertionHeader)
	delete(h, CFAssertionHeader)
	snap := l.st.snap.Load()
	exact, wild := snap.hostApps(req.Host)
	if exact == nil && wild == nil {
		next.ServeRouted(w, r, req)
		return
	}
	// Match on the path as the origin will read it: cleaned, and without
	// case (an origin that ignores case must not open a way around).
	p := r.URL.Path
	if p == "" {
		p = "/"
	}
	clean := strings.ToLower(path.Clean(p))
	if strings.HasPrefix(clean, "/.adit/") || clean == "/cdn-cgi/access/certs" || clean == "/cdn-cgi/access/logout" {
		l.endpoint(w, r, req, snap, exact, wild, clean)
		return
	}
	a := match(exact, wild, clean)
	if a == nil {
		next.ServeRouted(w, r, req)
		return
	}
	stripLookalikes(h)
	l.judge(w, r, req, snap, a, next)
}

// stripLookalikes removes header fields that name an assertion header with
// '_' for '-' (Adit_Access_Jwt_Assertion): CGI, WSGI and some proxies
// read both spellings as the same variable, so a client could slip its own
// identity past an origin that trusts the header.
func stripLookalikes(h http.Header) {
	for k := range h {
		if strings.IndexByte(k, '_') < 0 {
			continue
		}
		n := strings.ReplaceAll(k, "_", "-")
		if strings.EqualFold(n, AssertionHeader) || strings.EqualFold(n, CFAssertionHeader) {
			delete(h, k)
		}
	}
}

// judge applies a's policies to r.
func (l *Layer) judge(w http.ResponseWriter, r *http.Request, req *layer.Request, snap *snapshot, a *app, next layer.Handler) {
	now := l.now()
	s := subject{ip: req.ClientIP}
	h := r.Header
	tokenShown, tokenBad := false, false
	if id, secret := firstHeader(h, ClientIDHeader, CFClientIDHeader), firstHeader(h, ClientSecretHeader, CFClientSecretHeader); id != "" || secret != "" {
		tokenShown = true
		s.service = checkServiceToken(snap, id, secret, now)
		tokenBad = s.service == nil
		// The secret is the edge's to check, not the origin's to see.
		for _, k := range []string{ClientIDHeader, CFClientIDHeader, ClientSecretHeader, CFClientSecretHeader} {
			delete(h, k)
		}
	}
	var sessionJWT string
	if t := firstHeader(h, TokenHeader, CFTokenHeader); t != "" {
		if c := l.session(snap, t, a, now); c != nil {
			s.user, sessionJWT = c, t
		}
		delete(h, TokenHeader)
		delete(h, CFTokenHeader)
	}
	if s.user == nil {
		eachSessionCookie(h, func(v string) bool {
			if cl := l.session(snap, v, a, now); cl != nil {
				s.user, sessionJWT = cl, v
				return true
			}
			return false
		})
	}
	decision, pol := decide(a, &s)
	l.m.decisions.WithLabelValues(a.rec.Name, decision).Inc()
	switch decision {
	case decisionBypass:
		if l.log.Enabled(r.Context(), slog.LevelDebug) {
			l.log.Debug("bypass", "app", a.rec.Name, "policy", pol, "request_id", req.ID)
		}
		next.ServeRouted(w, r, req)
		return
	case decisionServiceAuth:
		id := &layer.Identity{App: a.rec.Name}
		if s.service != nil {
			id.ServiceToken = s.service.rec.Name
			tok, err := l.serviceAssertion(snap, s.service, a, r, now)
			if err != nil {
				l.log.Error("signing an assertion", "app", a.rec.Name, "err", err, "request_id", req.ID)
				l.page(w, r, req.ID, http.StatusServiceUnavailable, "Access is not ready", "The edge could not sign the request's identity.")
				return
			}
			id.Assertion = tok
			h[AssertionHeader] = []string{tok}
			h[CFAssertionHeader] = []string{tok}
		}
		req.Identity = id
		next.ServeRouted(w, r, req)
		return
	case decisionAllow:
		req.Identity = &layer.Identity{App: a.rec.Name, Email: s.user.Email, Groups: s.user.Groups, IdP: s.user.IdP, Assertion: sessionJWT}
		h[AssertionHeader] = []string{sessionJWT}
		h[CFAssertionHeader] = []string{sessionJWT}
		if l.log.Enabled(r.Context(), slog.LevelDebug) {
			l.log.Debug("allow", "app", a.rec.Name, "policy", pol, "email", s.user.Email, "request_id", req.ID)
		}
		next.ServeRouted(w, r, req)
		return
	case decisionLogin:
		if tokenShown && tokenBad {
			l.rl.Logger(l.log).Info("deny: invalid or revoked service token", "app", a.rec.Name, "client", req.ClientAddr, "request_id", req.ID)
			l.refuseJSON(w, req, http.StatusForbidden, a, "invalid or revoked service token")
			return
		}
		if isBrowser(r) && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			l.rl.Logger(l.log).Info("login required", "app", a.rec.Name, "client", req.ClientAddr, "request_id", req.ID)
			target := "/.adit/login?redirect_url=" + urlQueryEscape(r.URL.RequestURI())
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, target, http.StatusFound)
			return
		}
		l.rl.Logger(l.log).Info("deny: no session or service token", "app", a.rec.Name, "client", req.ClientAddr, "request_id", req.ID)
		w.Header().Set("WWW-Authenticate", `Bearer realm="adit-access"`)
		l.refuseJSON(w, req, http.StatusUnauthorized, a, "authentication required: log in with `adit access login`, or send a service token")
		return
	}
	who := req.ClientAddr
	if s.user != nil {
		who = s.user.Email
	} else if s.service != nil {
		who = "service token " + s.service.rec.Name
	}
	l.rl.Logger(l.log).Info("deny by policy", "app", a.rec.Name, "policy", pol, "who", who, "client", req.ClientAddr, "request_id", req.ID)
	if isBrowser(r) {
		msg := fmt.Sprintf("You are not allowed to reach %q.", a.rec.Name)
		if s.user != nil {
			msg = fmt.Sprintf("You are signed in as %s, who is not allowed to reach %q. To sign in as someone else, go to /.adit/logout first.", s.user.Email, a.rec.Name)
		}
		layer.WritePage(w, r, layer.Page{Code: http.StatusForbidden, Title: "Forbidden by Access", Message: msg, RequestID: req.ID})
		return
	}
	l.refuseJSON(w, req, http.StatusForbidden, a, "forbidden by the application's policies")
}

// eachSessionCookie calls f with the value of each session cookie in h
// (cookieName's), until f returns true. It does not allocate, unlike
// http.Request.Cookies, which parses every cookie of the request.
func eachSessionCookie(h http.Header, f func(v string) bool) {
	for _, line := range h["Cookie"] {
		for part := range strings.SplitSeq(line, ";") {
			name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || !strings.HasPrefix(name, SessionCookie) {
				continue
			}
			if f(strings.Trim(val, `"`)) {
				return
			}
		}
	}
}

// session returns the claims of a valid session JWT for a, from the cache
// or by checking it.
func (l *Layer) session(snap *snapshot, tok string, a *app, now time.Time) *claims {
	if v, ok := l.sessions.Load(tok); ok {
		c := v.(*claims)
		if c.Expiry.Time().After(now) && c.Audience.Contains(a.rec.AUD) && c.Email != "" && snap.keys[c.kid] != nil {
			return c
		}
		if !c.Expiry.Time().After(now) {
			l.sessions.Delete(tok)
			l.sessionCount.Add(-1)
		}
		return nil
	}
	c := new(claims)
	if err := verify(snap, tok, now, c); err != nil || c.Type != "app" || len(c.Audience) != 1 {
		return nil
	}
	c.kid = kidOf(tok)
	if l.sessionCount.Add(1) > maxCachedSessions {
		l.sessions.Clear()
		l.sessionCount.Store(1)
	}
	if _, loaded := l.sessions.LoadOrStore(tok, c); loaded {
		l.sessionCount.Add(-1)
	}
	if !c.Audience.Contains(a.rec.AUD) || c.Email == "" {
		return nil
	}
	return c
}

// kidOf is the key ID of a JWT already verified.
func kidOf(tok string) string {
	t, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || len(t.Headers) == 0 {
		return ""
	}
	return t.Headers[0].KeyID
}

// checkServiceToken returns the service token with that client ID and
// secret, if it is valid at now.
func checkServiceToken(snap *snapshot, id, secret string, now time.Time) *serviceToken {
	t := snap.tokens[id]
	if t == nil || secret == "" || len(secret) > 512 {
		return nil
	}
	sum := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(sum[:], t.rec.SecretHash) != 1 || !now.Before(t.rec.ExpiresAt) {
		return nil
	}
	return t
}

// serviceAssertion returns the JWT for t in a, signing one when the
// cached one is near its end.
func (l *Layer) serviceAssertion(snap *snapshot, t *serviceToken, a *app, r *http.Request, now time.Time) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.assertions[a.rec.Name]; ok && now.Before(c.exp.Add(-time.Hour)) {
		return c.jwt, nil
	}
	k := snap.signer(now)
	if k == nil {
		return "", fmt.Errorf("no signing key")
	}
	exp := now.Add(24 * time.Hour)
	if t.rec.ExpiresAt.Before(exp) {
		exp = t.rec.ExpiresAt
	}
	tok, err := sign(k, claims{
		Claims: jwt.Claims{
			Issuer: scheme(r) + "://" + hostOnly(r.Host), Audience: jwt.Audience{a.rec.AUD},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(exp),
		},
		Type: "app", App: a.rec.Name, CommonName: t.rec.ClientID, ServiceToken: t.rec.Name,
	})
	if err != nil {
		return "", err
	}
	if t.assertions == nil {
		t.assertions = make(map[string]cachedAssertion)
	}
	t.assertions[a.rec.Name] = cachedAssertion{jwt: tok, exp: exp}
	return tok, nil
}

// endpoint answers the edge's own paths on a hostname with applications.
func (l *Layer) endpoint(w http.ResponseWriter, r *http.Request, req *layer.Request, snap *snapshot, exact, wild []*app, clean string) {
	switch clean {
	case "/.adit/certs", "/cdn-cgi/access/certs":
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Write(snap.jwks)
	case "/.adit/login":
		q := r.URL.Query()
		redirect, ok := safeRedirect(q.Get("redirect_url"))
		if !ok {
			l.page(w, r, req.ID, http.StatusBadRequest, "Bad login link", "redirect_url must be a path on this hostname.")
			return
		}
		cb, cbState := q.Get("cli_callback"), q.Get("cli_state")
		if cb != "" && (!loopbackCallback(cb) || len(cbState) > 128) {
			l.page(w, r, req.ID, http.StatusBadRequest, "Bad login link", "cli_callback must be an http URL on a loopback address.")
			return
		}
		rp, _, _ := strings.Cut(redirect, "?")
		a := match(exact, wild, strings.ToLower(path.Clean(rp)))
		if a == nil {
			a = match(exact, wild, "/")
		}
		if a == nil {
			l.page(w, r, req.ID, http.StatusNotFound, "No application", "No Access application covers "+redirect+".")
			return
		}
		if cb != "" {
			// Already logged in: hand the session over at once.
			var tok string
			eachSessionCookie(r.Header, func(v string) bool {
				if l.session(snap, v, a, l.now()) != nil {
					tok = v
				}
				return tok != ""
			})
			if tok != "" {
				w.Header().Set("Cache-Control", "no-store")
				http.Redirect(w, r, cliRedirect(cb, cbState, tok), http.StatusFound)
				return
			}
		}
		l.startLogin(w, r, req.ID, snap, a, redirect, cb, cbState)
	case callbackPath:
		l.callback(w, r, req.ID, snap)
	case "/.adit/logout", "/cdn-cgi/access/logout":
		for _, list := range [][]*app{exact, wild} {
			for _, a := range list {
				l.clearSession(w, a)
			}
		}
		l.log.Info("logout", "host", req.Host, "request_id", req.ID)
		layer.WritePage(w, r, layer.Page{Code: http.StatusOK, Title: "Logged out", Message: "You are logged out of " + req.Host + ".", RequestID: req.ID})
	default:
		l.page(w, r, req.ID, http.StatusNotFound, "Not found", "No such Access endpoint.")
	}
}

func (l *Layer) setSession(w http.ResponseWriter, a *app, tok string) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName(a), Value: tok, Path: "/", MaxAge: int(a.session / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode,
	})
}

func (l *Layer) clearSession(w http.ResponseWriter, a *app) {
	http.SetCookie(w, &http.Cookie{Name: cookieName(a), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
}

// cookieName is the session cookie of a: SessionCookie for an application
// of a whole hostname, SessionCookie_ and the start of its audience tag for
// one of a path. The cookie's path is always "/": paths match without
// case, cookie paths with it.
func cookieName(a *app) string {
	if a.path == "" {
		return SessionCookie
	}
	return SessionCookie + "_" + limitString(a.rec.AUD, 12)
}

// page answers with an edge page (HTML for a browser).
func (l *Layer) page(w http.ResponseWriter, r *http.Request, rid string, code int, title, msg string) {
	layer.WritePage(w, r, layer.Page{Code: code, Title: title, Message: msg, RequestID: rid})
}

// refuseJSON answers a client that is not a browser.
func (l *Layer) refuseJSON(w http.ResponseWriter, req *layer.Request, code int, a *app, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(struct {
		Error       string `json:"error"`
		Application string `json:"application"`
		RequestID   string `json:"request_id"`
	}{msg, a.rec.Name, req.ID})
}

// isBrowser reports whether r comes from a browser (it accepts HTML).
func isBrowser(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

func firstHeader(h http.Header, a, b string) string {
	if v := h[a]; len(v) > 0 {
		return v[0]
	}
	if v := h[b]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func hostOnly(hostport string) string {
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.Contains(hostport[i:], "]") {
		return hostport[:i]
	}
	return hostport
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// metrics are the layer's counters.
type metrics struct {
	decisions *prometheus.CounterVec
	logins    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adit_edge_access_decisions_total",
			Help: "Access decisions on requests, by application and decision (allow, deny, bypass, service_auth, login).",
		}, []string{"app", "decision"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adit_edge_access_logins_total",
			Help: "Logins through identity providers, by application and result (ok, failed, refused, idp_error).",
		}, []string{"app", "result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.decisions, m.logins} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("access: metrics: %w", err)
			}
		}
	}
	return m, nil
}
