package access

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
)

// The login: the authorization code flow of OpenID Connect with PKCE
// (S256), against the application's identity provider, through the
// edge's own endpoints on the application's hostname. /.adit/login puts
// the flow's state in a short-lived cookie the edge signs (so the
// callback may land on any edge), then sends the browser to the provider;
// /.adit/callback checks the state, exchanges the code with the PKCE
// verifier, verifies the ID token (signature, issuer, audience, expiry)
// and its nonce, and sets the session cookie.

// oidcProvider is a discovered provider.
type oidcProvider struct {
	prov     *oidc.Provider
	verifier *oidc.IDTokenVerifier
	conf     oauth2.Config // without RedirectURL: it is per hostname
}

// provider discovers p's provider on first use (and after a failure).
func (l *Layer) provider(ctx context.Context, p *idp) (*oidcProvider, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.prov != nil {
		return p.prov, nil
	}
	// The provider keeps the context for its key set fetches: give it the
	// layer's, with the layer's HTTP client.
	pctx := oidc.ClientContext(l.ctx, l.cfg.HTTPClient)
	dctx, cancel := context.WithTimeout(pctx, 15*time.Second)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	prov, err := oidc.NewProvider(dctx, p.rec.Issuer)
	if err != nil {
		return nil, fmt.Errorf("access: identity provider %q: discovery: %w", p.rec.Name, err)
	}
	// NewProvider kept dctx for its key set: rebuild it from the layer's.
	var meta struct {
		JWKS string `json:"jwks_uri"`
	}
	if err := prov.Claims(&meta); err != nil || meta.JWKS == "" {
		return nil, fmt.Errorf("access: identity provider %q: discovery document has no jwks_uri", p.rec.Name)
	}
	keys := oidc.NewRemoteKeySet(pctx, meta.JWKS)
	scopes := p.rec.Scopes
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "email", "profile"}
	}
	p.prov = &oidcProvider{
		prov:     prov,
		verifier: oidc.NewVerifier(p.rec.Issuer, keys, &oidc.Config{ClientID: p.rec.ClientID}),
		conf: oauth2.Config{
			ClientID:     p.rec.ClientID,
			ClientSecret: p.rec.ClientSecret,
			Endpoint:     prov.Endpoint(),
			Scopes:       scopes,
		},
	}
	return p.prov, nil
}

// loginState is the signed content of the login cookie.
type loginState struct {
	jwt.Claims
	State    string `json:"state"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	App      string `json:"app"`
	Redirect string `json:"redirect"`
	// CLICallback and CLIState, for `adit access login`: where the token
	// goes once the person has logged in (a loopback URL).
	CLICallback string `json:"cli_callback,omitempty"`
	CLIState    string `json:"cli_state,omitempty"`
}

const (
	loginAudience  = "adit-access-login"
	loginCookie    = "Adit_Login_"
	loginLifetime  = 10 * time.Minute
	callbackPath   = "/.adit/callback"
	maxRedirectLen = 2048
)

// randomString is n random bytes in hex.
func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// safeRedirect checks a redirect_url: a path on this hostname.
func safeRedirect(s string) (string, bool) {
	if s == "" {
		return "/", true
	}
	if len(s) > maxRedirectLen || s[0] != '/' || strings.HasPrefix(s, "//") || strings.HasPrefix(s, "/\\") ||
		strings.ContainsAny(s, "\r\n\x00") {
		return "", false
	}
	return s, true
}

// loopbackCallback checks a cli_callback: http to a loopback address, so
// a token only ever goes to the machine of the browser that logged in.
func loopbackCallback(s string) bool {
	if len(s) > maxRedirectLen {
		return false
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Port() == "" {
		return false
	}
	switch u.Hostname() {
	case "127.0.0.1", "::1", "localhost":
		return true
	}
	return false
}

// scheme is the public scheme of r.
func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// startLogin sends the browser to a's identity provider.
func (l *Layer) startLogin(w http.ResponseWriter, r *http.Request, rid string, snap *snapshot, a *app, redirect, cliCallback, cliState string) {
	p, err := appIdP(snap, a)
	if err != nil {
		l.page(w, r, rid, http.StatusServiceUnavailable, "Login is not set up", err.Error())
		return
	}
	op, err := l.provider(r.Context(), p)
	if err != nil {
		l.log.Warn("identity provider unreachable", "app", a.rec.Name, "idp", p.rec.Name, "err", err, "request_id", rid)
		l.m.logins.WithLabelValues(a.rec.Name, "idp_error").Inc()
		l.page(w, r, rid, http.StatusBadGateway, "Identity provider unreachable",
			fmt.Sprintf("The identity provider %q of %q could not be reached. Try again shortly.", p.rec.Name, a.rec.Name))
		return
	}
	k := l.signerOrPage(w, r, rid, snap, l.now())
	if k == nil {
		return
	}
	target, err := l.beginLogin(w, k, op, loginState{App: a.rec.Name, Redirect: redirect, CLICallback: cliCallback, CLIState: cliState},
		loginAudience, scheme(r)+"://"+r.Host+callbackPath)
	if err != nil {
		l.page(w, r, rid, http.StatusInternalServerError, "Login failed", "The edge could not sign the login state.")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
}

// beginLogin starts a login's flow: st, with a fresh state, nonce and PKCE
// verifier, signed with k for audience into a login cookie on
// callbackPath; it returns the provider's URL to send the browser to, which
// will send it back to redirectURL.
func (l *Layer) beginLogin(w http.ResponseWriter, k *signingKey, op *oidcProvider, st loginState, audience, redirectURL string) (string, error) {
	now := l.now()
	st.Claims = jwt.Claims{
		Audience: jwt.Audience{audience},
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(loginLifetime)),
	}
	st.State, st.Nonce, st.Verifier = randomString(16), randomString(16), oauth2.GenerateVerifier()
	val, err := sign(k, st)
	if err != nil {
		return "", err
	}
	http.SetCookie(w, &http.Cookie{
		Name: loginCookie + st.State[:8], Value: val, Path: callbackPath,
		MaxAge: int(loginLifetime / time.Second), HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode,
	})
	conf := op.conf
	conf.RedirectURL = redirectURL
	return conf.AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)), nil
}

// loginAnswer reads the login cookie of the provider's answer r for
// audience, checks it against the answer's state and spends it. Without
// one, the message (for the person) says why.
func (l *Layer) loginAnswer(w http.ResponseWriter, r *http.Request, snap *snapshot, audience string) (*loginState, string) {
	state := r.URL.Query().Get("state")
	if len(state) != 32 {
		return nil, "The login answer has no valid state."
	}
	c, err := r.Cookie(loginCookie + state[:8])
	if err != nil {
		return nil, "This login was not started in this browser, or took longer than 10 minutes."
	}
	var st loginState
	if _, err := verify(snap, c.Value, l.now(), &st); err != nil || !st.Audience.Contains(audience) || st.State != state {
		return nil, "The login state does not match."
	}
	http.SetCookie(w, &http.Cookie{Name: c.Name, Value: "", Path: callbackPath, MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	return &st, ""
}

// signerOrPage returns the key to sign with, or answers that there is none.
func (l *Layer) signerOrPage(w http.ResponseWriter, r *http.Request, rid string, snap *snapshot, now time.Time) *signingKey {
	k := snap.signer(now)
	if k == nil {
		l.page(w, r, rid, http.StatusServiceUnavailable, "Login is not ready", "The edge has no signing key yet. Try again shortly.")
	}
	return k
}

// appIdP is the identity provider of a: the one it names, or the only one.
func appIdP(snap *snapshot, a *app) (*idp, error) {
	if a.rec.IdP != "" {
		if p := snap.idps[a.rec.IdP]; p != nil {
			return p, nil
		}
		//lint:ignore ST1005 a sentence shown to the visitor on the error page
		return nil, fmt.Errorf("The identity provider %q of %q does not exist.", a.rec.IdP, a.rec.Name)
	}
	if len(snap.idps) == 1 {
		for _, p := range snap.idps {
			return p, nil
		}
	}
	//lint:ignore ST1005 a sentence shown to the visitor on the error page
	return nil, fmt.Errorf("%q names no identity provider, and there is not exactly one.", a.rec.Name)
}

// callback finishes a login.
func (l *Layer) callback(w http.ResponseWriter, r *http.Request, rid string, snap *snapshot) {
	q := r.URL.Query()
	st, msg := l.loginAnswer(w, r, snap, loginAudience)
	if st == nil {
		l.page(w, r, rid, http.StatusBadRequest, "Login failed", msg+" Start again from the application.")
		return
	}
	now := l.now()
	a := snap.apps[st.App]
	if a == nil {
		l.page(w, r, rid, http.StatusNotFound, "Login failed", fmt.Sprintf("The application %q no longer exists.", st.App))
		return
	}
	if e := q.Get("error"); e != "" {
		l.m.logins.WithLabelValues(a.rec.Name, "refused").Inc()
		l.log.Info("login refused by the identity provider", "app", a.rec.Name, "error", e, "request_id", rid)
		l.page(w, r, rid, http.StatusForbidden, "Login refused", fmt.Sprintf("The identity provider refused the login to %q: %s", a.rec.Name, limitString(e+" "+q.Get("error_description"), 200)))
		return
	}
	p, err := appIdP(snap, a)
	if err != nil {
		l.page(w, r, rid, http.StatusServiceUnavailable, "Login is not set up", err.Error())
		return
	}
	id, err := l.exchange(r, p, q.Get("code"), st, scheme(r)+"://"+r.Host+callbackPath)
	if err != nil {
		l.m.logins.WithLabelValues(a.rec.Name, "failed").Inc()
		l.log.Warn("login failed", "app", a.rec.Name, "idp", p.rec.Name, "err", err, "request_id", rid)
		l.page(w, r, rid, http.StatusBadGateway, "Login failed", fmt.Sprintf("The login to %q through %q did not complete. Start again from the application.", a.rec.Name, p.rec.Name))
		return
	}
	k := l.signerOrPage(w, r, rid, snap, now)
	if k == nil {
		return
	}
	session := claims{
		Claims: jwt.Claims{
			Issuer:    scheme(r) + "://" + hostOnly(r.Host),
			Subject:   id.sub,
			Audience:  jwt.Audience{a.rec.AUD},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			Expiry:    jwt.NewNumericDate(now.Add(a.session)),
			ID:        randomString(16),
		},
		Type: "app", Email: id.email, Groups: id.groups, IdP: p.rec.Name, App: a.rec.Name,
	}
	tok, err := sign(k, session)
	if err != nil {
		l.page(w, r, rid, http.StatusInternalServerError, "Login failed", "The edge could not sign the session.")
		return
	}
	l.m.logins.WithLabelValues(a.rec.Name, "ok").Inc()
	l.log.Info("login", "app", a.rec.Name, "idp", p.rec.Name, "email", id.email, "groups", id.groups, "request_id", rid)
	l.setSession(w, a, tok)
	w.Header().Set("Cache-Control", "no-store")
	if st.CLICallback != "" {
		http.Redirect(w, r, cliRedirect(st.CLICallback, st.CLIState, tok), http.StatusFound)
		return
	}
	http.Redirect(w, r, st.Redirect, http.StatusFound)
}

// cliRedirect is the loopback URL `adit access login` listens on, with
// the token.
func cliRedirect(callback, state, tok string) string {
	u, _ := url.Parse(callback)
	q := u.Query()
	q.Set("token", tok)
	q.Set("state", state)
	u.RawQuery = q.Encode()
	return u.String()
}

// identity is what a login established.
type identity struct {
	sub, email string
	groups     []string
}

// exchange redeems the code (sent back to redirectURL) and verifies the ID
// token and its nonce.
func (l *Layer) exchange(r *http.Request, p *idp, code string, st *loginState, redirectURL string) (identity, error) {
	if code == "" || len(code) > 4096 {
		return identity{}, errors.New("no code in the answer")
	}
	op, err := l.provider(r.Context(), p)
	if err != nil {
		return identity{}, err
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(r.Context(), l.cfg.HTTPClient), 15*time.Second)
	defer cancel()
	conf := op.conf
	conf.RedirectURL = redirectURL
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return identity{}, fmt.Errorf("code exchange: %w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return identity{}, errors.New("the token answer has no id_token")
	}
	idt, err := op.verifier.Verify(ctx, raw)
	if err != nil {
		return identity{}, fmt.Errorf("ID token: %w", err)
	}
	if idt.Nonce != st.Nonce {
		return identity{}, errors.New("ID token: the nonce does not match")
	}
	var cl map[string]any
	if err := idt.Claims(&cl); err != nil {
		return identity{}, fmt.Errorf("ID token claims: %w", err)
	}
	groupsClaim := p.rec.GroupsClaim
	if groupsClaim == "" {
		groupsClaim = "groups"
	}
	_, hasGroups := cl[groupsClaim]
	if email, _ := cl["email"].(string); (email == "" || !hasGroups) && op.prov.UserInfoEndpoint() != "" {
		// Many providers put the email or the groups only in userinfo.
		if ui, err := op.prov.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil {
			var uc map[string]any
			if ui.Claims(&uc) == nil && uc["sub"] == idt.Subject {
				for k, v := range uc {
					if _, ok := cl[k]; !ok {
						cl[k] = v
					}
				}
			}
		}
	}
	id := identity{sub: idt.Subject}
	id.email, _ = cl["email"].(string)
	if v, ok := cl["email_verified"].(bool); ok && !v {
		return identity{}, fmt.Errorf("the email %q is not verified", id.email)
	}
	switch g := cl[groupsClaim].(type) {
	case []any:
		for _, v := range g {
			if s, ok := v.(string); ok && len(id.groups) < 256 {
				id.groups = append(id.groups, limitString(s, 256))
			}
		}
	case string:
		id.groups = []string{limitString(g, 256)}
	}
	id.email = limitString(id.email, 320)
	return id, nil
}

func limitString(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
