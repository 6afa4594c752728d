package access

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/internal/store"
)

// Revoked sessions. A session is a JWT the edge signed; it is valid until
// it expires unless it is revoked here, server-side:
//
//   - /.adit/logout revokes the session it ends: a key under
//     store.AccessRevokedSessionsPrefix named by the session's ID (jti),
//     with a lease until the session expires;
//   - an operator revokes an application's sessions issued until now
//     (`adit access app revoke-sessions NAME`), or one person's
//     (`--email`): a key under store.AccessRevokedAppsPrefix holding the
//     time, with a lease as long as the longest session.
//
// Every edge loads them at start and watches them into memory, so a
// revocation applies on every edge within a second and after a restart.
// A request checks them only when they changed since its session was last
// checked (a generation number), so the cached path stays a map lookup.

// revocations is what an edge knows of the revoked sessions.
type revocations struct {
	cli *clientv3.Client
	log logger

	// gen changes with every change: a session checked at gen needs no
	// new check until it moves. It starts at 1.
	gen atomic.Uint64
	rev atomic.Int64 // the etcd revision applied

	mu       sync.RWMutex
	sessions map[string]struct{}       // revoked session IDs
	apps     map[string]*appRevocation // by application name
}

// appRevocation is an application's revoked sessions, by issue time
// (Unix seconds): those issued before.
type appRevocation struct {
	before int64            // all of its sessions; 0 if none
	users  map[string]int64 // by lower-case email
}

// revocationRecord is the value of a revocation key.
type revocationRecord struct {
	App   string `json:"app"`
	Email string `json:"email,omitempty"`
	// Before is in Unix seconds: sessions issued before are revoked. Zero
	// for one session.
	Before int64 `json:"before,omitempty"`
	// ExpiresAt is when the revoked session ends (one session).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

func newRevocations(ctx context.Context, cli *clientv3.Client, log logger) (*revocations, error) {
	rv := &revocations{cli: cli, log: log}
	rv.gen.Store(1)
	if err := rv.load(ctx); err != nil {
		return nil, err
	}
	return rv, nil
}

// load reads every revocation.
func (rv *revocations) load(ctx context.Context) error {
	resp, err := rv.cli.Get(ctx, store.AccessRevokedPrefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("access: loading revoked sessions: %w", err)
	}
	rv.mu.Lock()
	rv.sessions = make(map[string]struct{}, len(resp.Kvs))
	rv.apps = make(map[string]*appRevocation)
	for _, kv := range resp.Kvs {
		rv.applyLocked(mvccpb.PUT, string(kv.Key), kv.Value)
	}
	rv.mu.Unlock()
	rv.rev.Store(resp.Header.Revision)
	rv.gen.Add(1)
	return nil
}

// watch applies changes until ctx ends or the watch fails.
func (rv *revocations) watch(ctx context.Context) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := rv.cli.Watch(wctx, store.AccessRevokedPrefix, clientv3.WithPrefix(), clientv3.WithRev(rv.rev.Load()+1), clientv3.WithProgressNotify())
	for wr := range wch {
		if wr.CompactRevision != 0 {
			return fmt.Errorf("history compacted up to revision %d", wr.CompactRevision)
		}
		if err := wr.Err(); err != nil {
			return err
		}
		if len(wr.Events) > 0 {
			rv.mu.Lock()
			for _, ev := range wr.Events {
				rv.applyLocked(ev.Type, string(ev.Kv.Key), ev.Kv.Value)
			}
			rv.mu.Unlock()
			rv.gen.Add(1)
		}
		rv.rev.Store(max(rv.rev.Load(), wr.Header.Revision))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch closed")
}

// applyLocked applies one key's change; rv.mu is held.
func (rv *revocations) applyLocked(typ mvccpb.Event_EventType, key string, val []byte) {
	if id, ok := strings.CutPrefix(key, store.AccessRevokedSessionsPrefix); ok {
		if typ == mvccpb.DELETE {
			delete(rv.sessions, id)
		} else {
			rv.sessions[id] = struct{}{}
		}
		return
	}
	rest, ok := strings.CutPrefix(key, store.AccessRevokedAppsPrefix)
	if !ok {
		return
	}
	app, email, user := strings.Cut(rest, "/users/")
	var before int64
	if typ != mvccpb.DELETE {
		var rec revocationRecord
		if err := json.Unmarshal(val, &rec); err != nil || rec.Before <= 0 {
			rv.log.Warn("ignoring a bad session revocation", "key", key, "err", err)
			return
		}
		before = rec.Before
	}
	if user {
		e, err := url.PathUnescape(email)
		if err != nil {
			return
		}
		email = e
	}
	ar := rv.apps[app]
	if ar == nil {
		if before == 0 {
			return
		}
		ar = &appRevocation{}
		rv.apps[app] = ar
	}
	switch {
	case !user:
		ar.before = before
	case before == 0:
		delete(ar.users, email)
	default:
		if ar.users == nil {
			ar.users = make(map[string]int64)
		}
		ar.users[email] = before
	}
	if ar.before == 0 && len(ar.users) == 0 {
		delete(rv.apps, app)
	}
}

// revoked reports whether c, a session of the application app, is revoked.
func (rv *revocations) revoked(app string, c *claims) bool {
	rv.mu.RLock()
	defer rv.mu.RUnlock()
	if _, ok := rv.sessions[c.ID]; ok {
		return true
	}
	ar := rv.apps[app]
	if ar == nil {
		return false
	}
	var iat int64
	if c.IssuedAt != nil {
		iat = int64(*c.IssuedAt)
	}
	if iat < ar.before {
		return true
	}
	b, ok := ar.users[strings.ToLower(c.Email)]
	return ok && iat < b
}

// waitRev waits, at most 2 s, until revision rev is applied.
func (rv *revocations) waitRev(ctx context.Context, rev int64) {
	waitFor(ctx, func() bool { return rv.rev.Load() >= rev })
}

// current reports whether s is still not revoked, checking only when the
// revocations changed since it was last checked.
func (l *Layer) current(s *session, a *app) bool {
	gen := l.rv.gen.Load()
	if s.checked.Load() == gen {
		return true
	}
	if l.rv.revoked(a.rec.Name, s.c) {
		return false
	}
	s.checked.Store(gen)
	return true
}

// revokeSession revokes one session on every edge, until it would have
// expired anyway.
func (l *Layer) revokeSession(ctx context.Context, s *session, a *app) error {
	exp := s.c.Expiry.Time()
	ttl := exp.Sub(l.now()) + time.Minute // the leeway verify allows, and more
	if ttl <= time.Minute {
		return nil
	}
	val, err := json.Marshal(revocationRecord{App: a.rec.Name, Email: s.c.Email, ExpiresAt: &exp})
	if err != nil {
		return err
	}
	rev, err := l.putWithLease(ctx, store.AccessRevokedSessionKey(s.c.ID), val, ttl)
	if err != nil {
		return err
	}
	l.rv.waitRev(ctx, rev)
	return nil
}

// putWithLease writes key with a lease of ttl, and returns the revision.
func (l *Layer) putWithLease(ctx context.Context, key string, val []byte, ttl time.Duration) (int64, error) {
	lease, err := l.st.cli.Grant(ctx, int64(ttl/time.Second)+1)
	if err != nil {
		return 0, fmt.Errorf("access: a lease for %s: %w", key, err)
	}
	resp, err := l.st.cli.Put(ctx, key, string(val), clientv3.WithLease(lease.ID), clientv3.WithPrevKV())
	if err != nil {
		return 0, fmt.Errorf("access: writing %s: %w", key, err)
	}
	// A revocation written again (a later time) leaves its old lease with
	// no key: end it rather than keep it for a month.
	if prev := resp.PrevKv; prev != nil && prev.Lease != 0 && clientv3.LeaseID(prev.Lease) != lease.ID {
		if _, err := l.st.cli.Revoke(ctx, clientv3.LeaseID(prev.Lease)); err != nil {
			l.log.Warn("ending a replaced revocation's lease", "key", key, "err", err)
		}
	}
	return resp.Header.Revision, nil
}

// logout revokes the sessions r carries for the applications of its
// hostname, and clears their cookies.
func (l *Layer) logout(w http.ResponseWriter, r *http.Request, host string, snap *snapshot, exact, wild []*app) {
	now := l.now()
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	for _, list := range [][]*app{exact, wild} {
		for _, a := range list {
			eachSessionCookie(r.Header, func(v string) bool {
				if s := l.session(snap, v, a, host, now); s != nil {
					if err := l.revokeSession(ctx, s, a); err != nil {
						l.log.Error("revoking a session at logout", "app", a.rec.Name, "email", s.c.Email, "err", err)
					}
				}
				return false
			})
			l.clearSession(w, a)
		}
	}
}

// maxEmailLen bounds an email address (RFC 5321's path limit).
const maxEmailLen = 320

// revokeSessions is POST /v1/access/apps/{name}/revoke-sessions.
func (l *Layer) revokeSessions(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	var req control.RevokeAccessSessionsRequest
	if r.ContentLength != 0 {
		if err := controlserver.DecodeJSON(w, r, &req); err != nil {
			return err
		}
	}
	email := strings.ToLower(strings.TrimSpace(req.Email))
	if email != "" && (len(email) > maxEmailLen || !strings.Contains(email, "@") || strings.ContainsFunc(email, func(c rune) bool { return c < ' ' || c == 0x7f })) {
		return control.Errorf(control.ErrInvalid, "email %q: want an email address", limitString(req.Email, 64))
	}
	var a control.AccessApp
	if _, err := getOne(r.Context(), l.st.cli, store.AccessAppKey(name), fmt.Sprintf("application %q", name), &a); err != nil {
		return err
	}
	now := l.now()
	// Sessions carry their issue time in whole seconds: the ones issued in
	// this second go too.
	before := now.Unix() + 1
	val, err := json.Marshal(revocationRecord{App: name, Email: email, Before: before})
	if err != nil {
		return err
	}
	rev, err := l.putWithLease(r.Context(), store.AccessRevokedAppKey(name, url.PathEscape(email)), val, control.MaxAccessSession+time.Hour)
	if err != nil {
		return err
	}
	l.rv.waitRev(r.Context(), rev)
	l.log.Info("sessions revoked", "app", name, "email", email)
	controlserver.WriteJSON(w, http.StatusOK, control.AccessSessionsRevoked{App: name, Email: email, IssuedBefore: time.Unix(before, 0).UTC()})
	return nil
}
