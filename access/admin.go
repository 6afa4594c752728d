package access

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Admin SSO: the dashboard's login through an identity provider. It is an
// application's login (oidc.go: the code flow with PKCE, the state in a
// signed cookie, the ID token and its nonce checked) run on the edge's API
// listener, at the same /.adit/login and /.adit/callback paths, for the
// people AdminConfig names. What it establishes is a dashboard session
// (package dashboard, control/controlserver/sessions.go), not an Access
// session: no JWT reaches the browser, and the session is checked against
// AdminConfig again on every API call.

// adminLoginAudience is the audience of an admin login's state cookie, so
// that an application's login state is never taken for one (or the
// reverse).
const adminLoginAudience = "adit-admin-login"

// AdminApp is the application name admin logins are counted and logged
// under (adit_edge_access_logins_total's app label).
const AdminApp = "adit-dashboard"

// AdminConfig is who may log in to the dashboard through an identity
// provider. The zero value turns admin SSO off: only an API token logs in.
type AdminConfig struct {
	// IdP names the Access identity provider administrators log in with
	// (`adit access idp add`). If "", admin SSO is off.
	IdP string
	// Emails are the people allowed, compared without case.
	Emails []string
	// Groups allow everyone the provider puts in one of them (its groups
	// claim, the provider's GroupsClaim).
	Groups []string
}

// Enabled reports whether admin SSO is on.
func (c AdminConfig) Enabled() bool { return c.IdP != "" }

// Validate checks c: an identity provider and at least one email or group,
// or nothing at all.
func (c AdminConfig) Validate() error {
	if c.IdP == "" {
		if len(c.Emails) > 0 || len(c.Groups) > 0 {
			return errors.New("access: admin emails or groups without an admin identity provider (--admin-idp)")
		}
		return nil
	}
	if len(c.Emails) == 0 && len(c.Groups) == 0 {
		return fmt.Errorf("access: admin identity provider %q allows no one: name --admin-emails or --admin-groups", c.IdP)
	}
	for _, e := range c.Emails {
		if at := strings.IndexByte(e, '@'); at <= 0 || at == len(e)-1 || strings.ContainsAny(e, " ,\t") {
			return fmt.Errorf("access: admin email %q is not an email address", e)
		}
	}
	for _, g := range c.Groups {
		if strings.TrimSpace(g) == "" {
			return errors.New("access: an empty admin group")
		}
	}
	return nil
}

// Allows reports whether a person who logged in through the identity
// provider idp, with that email and those groups, may administer the edge.
func (c AdminConfig) Allows(idp, email string, groups []string) bool {
	if c.IdP == "" || idp != c.IdP {
		return false
	}
	if email != "" && slices.ContainsFunc(c.Emails, func(e string) bool { return strings.EqualFold(e, email) }) {
		return true
	}
	return slices.ContainsFunc(groups, func(g string) bool { return slices.Contains(c.Groups, g) })
}

// AdminIdentity is who an admin login established.
type AdminIdentity struct {
	IdP, Email string
	Groups     []string
}

// AdminLogin runs admin logins for the dashboard (dashboard.SSO).
type AdminLogin struct {
	l   *Layer
	cfg AdminConfig
}

// AdminLogin returns the admin login of cfg, which must be enabled and
// valid.
func (l *Layer) AdminLogin(cfg AdminConfig) *AdminLogin {
	return &AdminLogin{l: l, cfg: cfg}
}

// IdP is the name of the identity provider administrators log in with.
func (a *AdminLogin) IdP() string { return a.cfg.IdP }

// adminError is an admin login's failure: Msg for the person, Err for the
// log.
type adminError struct {
	Msg string
	Err error
}

func (e *adminError) Error() string { return e.Msg }
func (e *adminError) Unwrap() error { return e.Err }

func adminErr(msg string, err error) error { return &adminError{Msg: msg, Err: err} }

// Start sends the browser to the identity provider, which will send it
// back to callback (the API listener's /.adit/callback, as the browser
// reaches it). Its error is a sentence for the person; the log has the
// details.
func (a *AdminLogin) Start(w http.ResponseWriter, r *http.Request, callback string) error {
	l := a.l
	snap := l.st.snap.Load()
	p := snap.idps[a.cfg.IdP]
	if p == nil {
		return adminErr(fmt.Sprintf("The identity provider %q does not exist (adit access idp add).", a.cfg.IdP), nil)
	}
	op, err := l.provider(r.Context(), p)
	if err != nil {
		l.m.logins.WithLabelValues(AdminApp, "idp_error").Inc()
		l.log.Warn("identity provider unreachable", "app", AdminApp, "idp", p.rec.Name, "err", err)
		return adminErr(fmt.Sprintf("The identity provider %q could not be reached. Try again shortly.", p.rec.Name), err)
	}
	k := snap.signer(l.now())
	if k == nil {
		return adminErr("The edge has no signing key yet. Try again shortly.", nil)
	}
	target, err := l.beginLogin(w, k, op, loginState{App: AdminApp}, adminLoginAudience, callback)
	if err != nil {
		return adminErr("The edge could not sign the login state.", err)
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

// Finish completes an admin login from the provider's answer r (at
// callback): the state, the code exchange, the ID token, and the check
// that the identity may administer the edge. Its error is a sentence for
// the person.
func (a *AdminLogin) Finish(w http.ResponseWriter, r *http.Request, callback string) (AdminIdentity, error) {
	l := a.l
	snap := l.st.snap.Load()
	st, msg := l.loginAnswer(w, r, snap, adminLoginAudience)
	if st == nil {
		return AdminIdentity{}, adminErr(msg+" Sign in again.", nil)
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		l.m.logins.WithLabelValues(AdminApp, "refused").Inc()
		l.log.Info("login refused by the identity provider", "app", AdminApp, "error", e)
		return AdminIdentity{}, adminErr("The identity provider refused the login: "+limitString(e+" "+q.Get("error_description"), 200), nil)
	}
	p := snap.idps[a.cfg.IdP]
	if p == nil {
		return AdminIdentity{}, adminErr(fmt.Sprintf("The identity provider %q does not exist (adit access idp add).", a.cfg.IdP), nil)
	}
	id, err := l.exchange(r, p, q.Get("code"), st, callback)
	if err != nil {
		l.m.logins.WithLabelValues(AdminApp, "failed").Inc()
		l.log.Warn("login failed", "app", AdminApp, "idp", p.rec.Name, "err", err)
		return AdminIdentity{}, adminErr(fmt.Sprintf("The login through %q did not complete. Sign in again.", p.rec.Name), err)
	}
	if !a.cfg.Allows(p.rec.Name, id.email, id.groups) {
		l.m.logins.WithLabelValues(AdminApp, "denied").Inc()
		l.log.Info("admin login denied", "app", AdminApp, "idp", p.rec.Name, "email", id.email, "groups", id.groups)
		who := id.email
		if who == "" {
			who = id.sub
		}
		return AdminIdentity{}, adminErr(fmt.Sprintf("You are signed in to %q as %s, who may not administer this edge.", p.rec.Name, who), nil)
	}
	l.m.logins.WithLabelValues(AdminApp, "ok").Inc()
	l.log.Info("admin login", "app", AdminApp, "idp", p.rec.Name, "email", id.email, "groups", id.groups)
	return AdminIdentity{IdP: p.rec.Name, Email: id.email, Groups: id.groups}, nil
}
