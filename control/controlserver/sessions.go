package controlserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
)

// Dashboard sessions. The dashboard (package dashboard) exchanges an API
// token, pasted once, for a session: a random value in an HttpOnly,
// Secure, SameSite=Strict cookie. Only the value's sha256 is stored, with
// the sha256 of the token it came from, under an etcd lease of the
// session's lifetime (so every edge of a fleet knows it, and it vanishes
// when it ends). The API takes the cookie in the token's stead on requests
// that also carry CSRFHeader, which a browser sends only from a script of
// the dashboard's own origin; the session works exactly as long as its
// token does, so revoking or rotating the token ends it.

const (
	// SessionCookie is the session cookie's name; the __Host- prefix makes
	// browsers keep it Secure, for this origin only, on path /.
	SessionCookie = "__Host-adit_session"
	// CSRFHeader must be on every request authenticated by the session
	// cookie (any value): a form or link on another site cannot add it, and
	// a script of another origin cannot without this edge's CORS consent,
	// which it never gives.
	CSRFHeader = "X-Adit-Csrf"
	// SessionTTL is how long a session lasts.
	SessionTTL = 12 * time.Hour
	// sessionPrefix starts every session cookie value.
	sessionPrefix = "adits_"
	// maxSessions bounds the live sessions.
	maxSessions = 1000
)

// sessionRecord is a session as stored under store.SessionKey.
type sessionRecord struct {
	TokenHash string    `json:"token_hash,omitempty"` // hex sha256 of the API token it came from
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// IdP, Email and Groups are who logged in through an identity
	// provider, for a session without a token (admin SSO).
	IdP    string   `json:"idp,omitempty"`
	Email  string   `json:"email,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

// SetAdminSSO sets who may hold a session started through an identity
// provider (CreateSSOSession): allows reports whether a person who logged
// in through idp, with that email and groups, may still administer the
// edge. If it is never set, no such session works. Call it before the API
// serves.
func (s *Service) SetAdminSSO(allows func(idp, email string, groups []string) bool) {
	s.adminAllows = allows
}

// CreateSSOSession starts a dashboard session for a person who logged in
// through an identity provider (admin SSO) and whom the edge's setting
// allows: it returns the cookie value and when the session ends.
func (s *Service) CreateSSOSession(ctx context.Context, idp, email string, groups []string) (value string, expires time.Time, err error) {
	if s.adminAllows == nil || !s.adminAllows(idp, email, groups) {
		return "", time.Time{}, control.Errorf(control.ErrUnauthorized, "%s may not administer this edge", email)
	}
	created := now()
	return s.putSession(ctx, sessionRecord{CreatedAt: created, ExpiresAt: created.Add(SessionTTL), IdP: idp, Email: email, Groups: groups})
}

// CreateSession starts a dashboard session for an API token: it returns
// the cookie value (shown this once; only its hash is stored) and when the
// session ends. An unknown or revoked token is ErrUnauthorized.
func (s *Service) CreateSession(ctx context.Context, token string) (value string, expires time.Time, err error) {
	if !s.CheckToken(ctx, token) {
		return "", time.Time{}, control.Errorf(control.ErrUnauthorized, "that is not a valid API token (the edge's admin.token, or one from `adit admin token rotate`)")
	}
	created := now()
	return s.putSession(ctx, sessionRecord{TokenHash: tokenHash(token), CreatedAt: created, ExpiresAt: created.Add(SessionTTL)})
}

// putSession stores a new session under a fresh cookie value.
func (s *Service) putSession(ctx context.Context, rec sessionRecord) (value string, expires time.Time, err error) {
	count, err := s.cli.Get(ctx, store.SessionsPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return "", time.Time{}, etcdError("create session", err)
	}
	if count.Count >= maxSessions {
		return "", time.Time{}, control.Errorf(control.ErrConflict, "there are %d live dashboard sessions, the limit; log out elsewhere or wait for them to expire", count.Count)
	}
	lease, err := s.cli.Grant(ctx, int64(SessionTTL/time.Second))
	if err != nil {
		return "", time.Time{}, etcdError("create session", err)
	}
	value = sessionPrefix + base64.RawURLEncoding.EncodeToString(randomBytes(32))
	val, err := json.Marshal(rec)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("control: create session: %w", err)
	}
	if _, err := s.cli.Put(ctx, store.SessionKey(tokenHash(value)), string(val), clientv3.WithLease(lease.ID)); err != nil {
		return "", time.Time{}, etcdError("create session", err)
	}
	if rec.TokenHash != "" {
		s.log.Info("dashboard session started", "token_id", rec.TokenHash[:control.TokenIDLen], "expires", rec.ExpiresAt)
	} else {
		s.log.Info("dashboard session started", "idp", rec.IdP, "email", rec.Email, "expires", rec.ExpiresAt)
	}
	return value, rec.ExpiresAt, nil
}

// DeleteSession ends the session with that cookie value (logout); an
// unknown one is not an error.
func (s *Service) DeleteSession(ctx context.Context, value string) error {
	if !validSessionValue(value) {
		return nil
	}
	if _, err := s.cli.Delete(ctx, store.SessionKey(tokenHash(value))); err != nil {
		return etcdError("delete session", err)
	}
	return nil
}

// CheckSession reports whether value is a live session whose API token
// still works, and that token's ID (control.TokenID); or a live session
// of a person the admin SSO setting still allows (no token ID).
func (s *Service) CheckSession(ctx context.Context, value string) (tokenID string, ok bool) {
	if !validSessionValue(value) {
		return "", false
	}
	resp, err := s.cli.Get(ctx, store.SessionKey(tokenHash(value)))
	if err != nil {
		s.log.Error("cannot check a dashboard session", "err", err)
		return "", false
	}
	if len(resp.Kvs) != 1 {
		return "", false
	}
	var rec sessionRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil || (len(rec.TokenHash) != 64 && rec.IdP == "") {
		s.log.Error("unreadable dashboard session record", "key", string(resp.Kvs[0].Key))
		return "", false
	}
	if !now().Before(rec.ExpiresAt) {
		return "", false
	}
	if rec.TokenHash == "" {
		return "", s.adminAllows != nil && s.adminAllows(rec.IdP, rec.Email, rec.Groups)
	}
	if !s.checkTokenHash(ctx, rec.TokenHash) {
		return "", false
	}
	return rec.TokenHash[:control.TokenIDLen], true
}

// validSessionValue reports whether v has the shape of a session cookie
// value, before any lookup.
func validSessionValue(v string) bool {
	rest, ok := strings.CutPrefix(v, sessionPrefix)
	if !ok || len(rest) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(rest)
	return err == nil
}

// callerKey is the context key of the API token ID a request is made with.
type callerKey struct{}

// authenticate checks a request's credentials: a bearer token, or else the
// session cookie with CSRFHeader. It returns the caller's token ID, or an
// error for the answer.
func (h *apiHandler) authenticate(r *http.Request) (tokenID string, err error) {
	unauthorized := &httpError{Status: http.StatusUnauthorized, Code: "unauthorized", Msg: "missing or invalid API token"}
	if tok := bearerToken(r); tok != "" {
		if !h.svc.CheckToken(r.Context(), tok) {
			return "", unauthorized
		}
		return control.TokenID(tok), nil
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return "", unauthorized
	}
	if r.Header.Get(CSRFHeader) == "" {
		return "", &httpError{Status: http.StatusUnauthorized, Code: "unauthorized",
			Msg: "a dashboard session cookie is only taken with the " + CSRFHeader + " header (the dashboard's script sends it)"}
	}
	id, ok := h.svc.CheckSession(r.Context(), c.Value)
	if !ok {
		return "", &httpError{Status: http.StatusUnauthorized, Code: "unauthorized", Msg: "the dashboard session has ended; log in again"}
	}
	return id, nil
}

// callerTokenID is the ID of the API token the request was authenticated
// with (directly or through a session).
func callerTokenID(r *http.Request) string {
	id, _ := r.Context().Value(callerKey{}).(string)
	return id
}
