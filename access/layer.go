package access

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	rv     *revocations
	m      *metrics
	wg     sync.WaitGroup
	// rl keeps what any visitor can trigger at will (refusals) from
	// flooding the log: one line per kind per 10s, with the count left
	// out; the metrics count every decision.
	rl *ratelog.Limiter

	// sessions caches verified session JWTs, so a request with a known
	// cookie costs a map lookup instead of a signature check, and the
	// assertion signed for each, so the origin's JWT is signed once per
	// session rather than per request.
	sessions     sync.Map // string → *session
	sessionCount atomic.Int64
}

// session is a verified session JWT in the cache.
type session struct {
	c       *claims
	asrt    atomic.Pointer[assertion] // the origin's JWT, once signed
	checked atomic.Uint64             // the revocations' generation it was last found current at
}

// assertion is a JWT the edge signed for the origin, and what it needs to
// know when to sign another.
type assertion struct {
	jwt string
	kid string    // the key that signed it: a newer signer replaces it
	exp time.Time // when it ends
}

// assertionLifetime is how long an origin's assertion for a person is
// valid (at most until the session ends); it is signed again
// assertionRenew before it ends.
const (
	assertionLifetime = time.Hour
	assertionRenew    = 10 * time.Minute
)

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
	l.rv, err = newRevocations(ctx, deps.Etcd, log)
	if err != nil {
		cancel()
		return nil, err
	}
	l.m, err = newMetrics(deps.Metrics)
	if err != nil {
		cancel()
		return nil, err
	}
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		l.st.run(ctx)
	}()
	go func() {
		defer l.wg.Done()
		watchLoop(ctx, log, "revoked sessions", l.rv.watch, l.rv.load)
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
		stripSessionCookies(h)
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
	var sess *session
	if t := firstHeader(h, TokenHeader, CFTokenHeader); t != "" {
		if ss := l.session(snap, t, a, req.Host, now); ss != nil {
			sess, s.user = ss, ss.c
		}
		delete(h, TokenHeader)
		delete(h, CFTokenHeader)
	}
	if s.user == nil {
		eachSessionCookie(h, func(v string) bool {
			if ss := l.session(snap, v, a, req.Host, now); ss != nil {
				sess, s.user = ss, ss.c
				return true
			}
			return false
		})
	}
	// The session cookie is the edge's: the origin learns who the visitor
	// is from the assertion, and does not carry ~0.5 KB more per request.
	stripSessionCookies(h)
	decision, pol := decide(a, &s)
	l.m.decision(a, decision).Inc()
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
			setAssertion(h, tok)
		}
		req.Identity = id
		next.ServeRouted(w, r, req)
		return
	case decisionAllow:
		tok, err := l.personAssertion(snap, sess, now)
		if err != nil {
			l.log.Error("signing an assertion", "app", a.rec.Name, "err", err, "request_id", req.ID)
			l.page(w, r, req.ID, http.StatusServiceUnavailable, "Access is not ready", "The edge could not sign the request's identity.")
			return
		}
		req.Identity = &layer.Identity{App: a.rec.Name, Email: s.user.Email, Groups: s.user.Groups, IdP: s.user.IdP, Assertion: tok}
		setAssertion(h, tok)
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
			if !ok || !isSessionCookie(name) {
				continue
			}
			if f(strings.Trim(val, `"`)) {
				return
			}
		}
	}
}

// session returns the valid session JWT tok for a on host, from the cache
// or by checking it. A session is valid until it expires while the key
// that signed it is kept, for its application's audience and on the
// hostname it was issued on; it names a person and has an ID, so an
// assertion the edge signed for an origin (no ID) is never a session.
func (l *Layer) session(snap *snapshot, tok string, a *app, host string, now time.Time) *session {
	if v, ok := l.sessions.Load(tok); ok {
		s := v.(*session)
		c := s.c
		if !c.Expiry.Time().After(now) {
			l.sessions.Delete(tok)
			l.sessionCount.Add(-1)
			return nil
		}
		if c.Audience[0] != a.rec.AUD || snap.keys[c.kid] == nil || !issuedFor(c.Issuer, host) || !l.current(s, a) {
			return nil
		}
		return s
	}
	c := new(claims)
	kid, err := verify(snap, tok, now, c)
	if err != nil || c.Type != "app" || len(c.Audience) != 1 || c.Email == "" || c.ID == "" {
		return nil
	}
	c.kid = kid
	s := &session{c: c}
	if l.sessionCount.Add(1) > maxCachedSessions {
		l.sessions.Clear()
		l.sessionCount.Store(1)
	}
	if v, loaded := l.sessions.LoadOrStore(tok, s); loaded {
		l.sessionCount.Add(-1)
		s = v.(*session)
	}
	if c.Audience[0] != a.rec.AUD || !issuedFor(c.Issuer, host) || !l.current(s, a) {
		return nil
	}
	return s
}

// issuedFor reports whether iss, the issuer of a session
// (scheme://hostname), names host (a lower-case hostname without port).
func issuedFor(iss, host string) bool {
	_, h, ok := strings.Cut(iss, "://")
	return ok && strings.EqualFold(h, host)
}

// personAssertion returns the origin's JWT for a session: signed once and
// reused until shortly before it ends or until another key signs.
func (l *Layer) personAssertion(snap *snapshot, s *session, now time.Time) (string, error) {
	k := snap.signer(now)
	if k == nil {
		return "", errors.New("no signing key")
	}
	c := s.c
	end := c.Expiry.Time()
	if as := s.asrt.Load(); as != nil && as.kid == k.rec.KID && (now.Before(as.exp.Add(-assertionRenew)) || !as.exp.Before(end)) {
		return as.jwt, nil
	}
	exp := now.Add(assertionLifetime)
	if end.Before(exp) {
		exp = end
	}
	// Small on purpose (it goes to the origin with every request, twice):
	// no ID, no nbf, no application name (aud says it).
	tok, err := sign(k, claims{
		Claims: jwt.Claims{
			Issuer: c.Issuer, Subject: c.Subject, Audience: c.Audience,
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(exp),
		},
		Type: "app", Email: c.Email, Groups: c.Groups, IdP: c.IdP,
	})
	if err != nil {
		return "", err
	}
	s.asrt.Store(&assertion{jwt: tok, kid: k.rec.KID, exp: exp})
	return tok, nil
}

// setAssertion puts the origin's JWT in h under both names, with one
// allocation.
func setAssertion(h http.Header, tok string) {
	v := []string{tok, tok}
	h[AssertionHeader] = v[0:1:1]
	h[CFAssertionHeader] = v[1:2:2]
}

// stripSessionCookies removes the session cookies (SessionCookie and
// SessionCookie_*) from h's Cookie fields and keeps the others. It
// allocates only when the visitor sends other cookies beside a session.
func stripSessionCookies(h http.Header) {
	lines := h["Cookie"]
	n := 0
	for _, line := range lines {
		if strings.Contains(line, SessionCookie) {
			line = withoutSessionCookies(line)
		}
		if line != "" {
			lines[n] = line
			n++
		}
	}
	switch {
	case n == 0 && len(lines) > 0:
		delete(h, "Cookie")
	case n < len(lines):
		clear(lines[n:])
		h["Cookie"] = lines[:n]
	}
}

// withoutSessionCookies is a Cookie field without its session cookies.
func withoutSessionCookies(line string) string {
	var b strings.Builder
	for part := range strings.SplitSeq(line, ";") {
		p := strings.TrimSpace(part)
		if p == "" {
			continue
		}
		name, _, _ := strings.Cut(p, "=")
		if isSessionCookie(name) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p)
	}
	return b.String()
}

// isSessionCookie reports whether a cookie of that name is a session.
func isSessionCookie(name string) bool {
	rest, ok := strings.CutPrefix(name, SessionCookie)
	return ok && (rest == "" || rest[0] == '_')
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
	k := snap.signer(now)
	if k == nil {
		return "", errors.New("no signing key")
	}
	host := hostOnly(r.Host)
	key := serviceAssertionKey{app: a.rec.Name, host: host}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.assertions[key]; ok && c.kid == k.rec.KID && now.Before(c.exp.Add(-time.Hour)) {
		return c.jwt, nil
	}
	exp := now.Add(24 * time.Hour)
	if t.rec.ExpiresAt.Before(exp) {
		exp = t.rec.ExpiresAt
	}
	tok, err := sign(k, claims{
		Claims: jwt.Claims{
			Issuer: scheme(r) + "://" + host, Audience: jwt.Audience{a.rec.AUD},
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(exp),
		},
		Type: "app", CommonName: t.rec.ClientID, ServiceToken: t.rec.Name,
	})
	if err != nil {
		return "", err
	}
	if t.assertions == nil || len(t.assertions) >= maxServiceAssertions {
		t.assertions = make(map[serviceAssertionKey]assertion)
	}
	t.assertions[key] = assertion{jwt: tok, kid: k.rec.KID, exp: exp}
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
				if l.session(snap, v, a, req.Host, l.now()) != nil {
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
		l.logout(w, r, req.Host, snap, exact, wild)
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

// decision returns the decisions counter of a and d, without the label
// lookup on every request.
func (m *metrics) decision(a *app, d string) prometheus.Counter {
	cs := a.counters.Load()
	if cs == nil {
		cs = new([len(decisionNames)]prometheus.Counter)
		for i, n := range decisionNames {
			cs[i] = m.decisions.WithLabelValues(a.rec.Name, n)
		}
		a.counters.Store(cs)
	}
	for i, n := range decisionNames {
		if n == d {
			return cs[i]
		}
	}
	return m.decisions.WithLabelValues(a.rec.Name, d)
}

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
			Help: "Logins through identity providers, by application and result (ok, failed, refused, idp_error; denied: an admin login of someone not allowed). Admin logins to the dashboard count under app adit-dashboard.",
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
