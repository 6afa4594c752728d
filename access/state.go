package access

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
)

// tokenRecord is a service token as stored: its secret only as a sha256.
type tokenRecord struct {
	control.AccessServiceToken
	SecretHash []byte `json:"secret_sha256"`
}

// keyRecord is a signing key as stored.
type keyRecord struct {
	control.AccessKey
	PrivateKey []byte `json:"private_key"` // PKCS#8 DER of an ECDSA P-256 key
}

// idp is an identity provider in memory, with its discovered provider
// (oidc.go), built on the first login.
type idp struct {
	rec control.AccessIdP

	mu   sync.Mutex
	prov *oidcProvider
}

// app is an application in memory.
type app struct {
	rec      control.AccessApp
	host     string // lower-case; "*.example.com" for a wildcard
	path     string // "" or "/path", lower-case (paths match without case)
	session  time.Duration
	policies []policy

	// counters are the decisions metric's counters for this application,
	// looked up once (metrics.decision).
	counters atomic.Pointer[[len(decisionNames)]prometheus.Counter]
}

// serviceToken is a service token in memory.
type serviceToken struct {
	rec tokenRecord

	mu         sync.Mutex
	assertions map[serviceAssertionKey]assertion
}

// serviceAssertionKey is what a service token's assertion is for: the
// issuer names the hostname (a wildcard application has many).
type serviceAssertionKey struct{ app, host string }

// maxServiceAssertions bounds a service token's cached assertions; past
// it, the cache starts over.
const maxServiceAssertions = 1024

// signingKey is a signing key in memory.
type signingKey struct {
	rec  keyRecord
	priv *ecdsa.PrivateKey
}

// snapshot is everything the request path reads, replaced whole on every
// change (records are few, changes rare).
type snapshot struct {
	rev    int64
	idps   map[string]*idp
	apps   map[string]*app
	exact  map[string][]*app        // by hostname, the longest path first
	wild   map[string][]*app        // by ".example.com" of "*.example.com"
	tokens map[string]*serviceToken // by client ID
	keys   map[string]*signingKey   // by key ID
	sorted []*signingKey            // oldest first
	jwks   []byte
}

// records is the parsed content of the Access prefix, by etcd key.
type records map[string]any

// parseRecord parses one Access record by its key; unknown keys and bad
// records return nil (and are logged by the caller).
func parseRecord(key string, val []byte) (any, error) {
	switch {
	case strings.HasPrefix(key, store.AccessIdPsPrefix):
		var r control.AccessIdP
		if err := json.Unmarshal(val, &r); err != nil {
			return nil, err
		}
		return &idp{rec: r}, nil
	case strings.HasPrefix(key, store.AccessAppsPrefix):
		var r control.AccessApp
		if err := json.Unmarshal(val, &r); err != nil {
			return nil, err
		}
		return compileApp(r)
	case strings.HasPrefix(key, store.AccessServiceTokensPrefix):
		var r tokenRecord
		if err := json.Unmarshal(val, &r); err != nil {
			return nil, err
		}
		if len(r.SecretHash) != 32 || r.ClientID == "" {
			return nil, errors.New("service token record without a client ID or secret hash")
		}
		return &serviceToken{rec: r}, nil
	case strings.HasPrefix(key, store.AccessKeysPrefix):
		var r keyRecord
		if err := json.Unmarshal(val, &r); err != nil {
			return nil, err
		}
		k, err := x509.ParsePKCS8PrivateKey(r.PrivateKey)
		if err != nil {
			return nil, err
		}
		priv, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("signing key %s is not an ECDSA key", r.KID)
		}
		return &signingKey{rec: r, priv: priv}, nil
	}
	return nil, nil
}

// compileApp checks a stored application and parses its policies.
func compileApp(r control.AccessApp) (*app, error) {
	_, host, path, err := control.ParseAccessDomain(r.Domain)
	if err != nil {
		return nil, err
	}
	session, err := control.ParseSessionDuration(r.SessionDuration)
	if err != nil {
		return nil, err
	}
	a := &app{rec: r, host: host, path: strings.ToLower(path), session: session}
	for i, p := range r.Policies {
		cp, err := compilePolicy(p)
		if err != nil {
			return nil, fmt.Errorf("policy %d: %w", i+1, err)
		}
		a.policies = append(a.policies, cp)
	}
	return a, nil
}

// build indexes the records into a snapshot.
func build(recs records, rev int64) *snapshot {
	s := &snapshot{
		rev:    rev,
		idps:   make(map[string]*idp),
		apps:   make(map[string]*app),
		exact:  make(map[string][]*app),
		wild:   make(map[string][]*app),
		tokens: make(map[string]*serviceToken),
		keys:   make(map[string]*signingKey),
	}
	for _, v := range recs {
		switch v := v.(type) {
		case *idp:
			s.idps[v.rec.Name] = v
		case *app:
			s.apps[v.rec.Name] = v
			if rest, ok := strings.CutPrefix(v.host, "*"); ok {
				s.wild[rest] = append(s.wild[rest], v)
			} else {
				s.exact[v.host] = append(s.exact[v.host], v)
			}
		case *serviceToken:
			s.tokens[v.rec.ClientID] = v
		case *signingKey:
			s.keys[v.rec.KID] = v
			s.sorted = append(s.sorted, v)
		}
	}
	byPath := func(a, b *app) int {
		return cmp.Or(cmp.Compare(len(b.path), len(a.path)), cmp.Compare(a.rec.Name, b.rec.Name))
	}
	for _, m := range []map[string][]*app{s.exact, s.wild} {
		for _, list := range m {
			slices.SortFunc(list, byPath)
		}
	}
	slices.SortFunc(s.sorted, func(a, b *signingKey) int {
		return cmp.Or(a.rec.ActiveFrom.Compare(b.rec.ActiveFrom), cmp.Compare(a.rec.KID, b.rec.KID))
	})
	s.jwks = buildJWKS(s.sorted)
	return s
}

// hostApps returns the applications of a hostname, the exact ones first.
// It does not allocate.
func (s *snapshot) hostApps(host string) (exact, wild []*app) {
	exact = s.exact[host]
	if len(s.wild) > 0 {
		if i := strings.IndexByte(host, '.'); i > 0 {
			wild = s.wild[host[i:]]
		}
	}
	return exact, wild
}

// match returns the most specific application for host and a cleaned,
// lower-case path: an exact hostname before a wildcard, then the longest
// path that is the request's path or a parent of it.
func match(exact, wild []*app, path string) *app {
	for _, list := range [2][]*app{exact, wild} {
		for _, a := range list {
			if pathUnder(path, a.path) {
				return a
			}
		}
	}
	return nil
}

// pathUnder reports whether path is prefix or below it ("" is every path).
func pathUnder(path, prefix string) bool {
	if prefix == "" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// signer returns the newest key that is active at now.
func (s *snapshot) signer(now time.Time) *signingKey {
	for i := len(s.sorted) - 1; i >= 0; i-- {
		if !s.sorted[i].rec.ActiveFrom.After(now) {
			return s.sorted[i]
		}
	}
	if len(s.sorted) > 0 {
		return s.sorted[0]
	}
	return nil
}

// state keeps the snapshot current from etcd.
type state struct {
	cli  *clientv3.Client
	log  logger
	snap atomic.Pointer[snapshot]
	recs records // owned by the watch goroutine
	done chan struct{}
}

// logger is the part of *slog.Logger state uses.
type logger interface {
	Warn(msg string, args ...any)
	Info(msg string, args ...any)
}

func newState(ctx context.Context, cli *clientv3.Client, log logger) (*state, error) {
	st := &state{cli: cli, log: log, done: make(chan struct{})}
	if err := st.load(ctx); err != nil {
		return nil, err
	}
	return st, nil
}

// load reads every Access record and publishes a snapshot.
func (st *state) load(ctx context.Context) error {
	resp, err := st.cli.Get(ctx, store.AccessPrefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("access: loading records: %w", err)
	}
	recs := make(records, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		st.put(recs, string(kv.Key), kv.Value)
	}
	st.recs = recs
	st.snap.Store(build(recs, resp.Header.Revision))
	return nil
}

func (st *state) put(recs records, key string, val []byte) {
	v, err := parseRecord(key, val)
	if err != nil {
		st.log.Warn("ignoring a bad record", "key", key, "err", err)
		delete(recs, key)
		return
	}
	if v != nil {
		recs[key] = v
	}
}

// run watches until ctx ends, reloading after any failure.
func (st *state) run(ctx context.Context) {
	defer close(st.done)
	watchLoop(ctx, st.log, "Access records", st.watch, st.load)
}

// watchLoop runs watch until ctx ends; after a failure it calls load
// (with backoff, until it succeeds) and watches again.
func watchLoop(ctx context.Context, log logger, what string, watch, load func(context.Context) error) {
	delay := 50 * time.Millisecond
	for {
		err := watch(ctx)
		if ctx.Err() != nil {
			return
		}
		log.Warn("watch interrupted; reloading", "what", what, "err", err)
		for {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			delay = min(2*delay, 5*time.Second)
			if err := load(ctx); err == nil {
				delay = 50 * time.Millisecond
				break
			}
		}
	}
}

func (st *state) watch(ctx context.Context) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	rev := st.snap.Load().rev
	wch := st.cli.Watch(wctx, store.AccessPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
	for wr := range wch {
		if wr.CompactRevision != 0 {
			return fmt.Errorf("history compacted up to revision %d", wr.CompactRevision)
		}
		if err := wr.Err(); err != nil {
			return err
		}
		if len(wr.Events) == 0 {
			// A progress notification: nothing changed up to its revision.
			rev = max(rev, wr.Header.Revision)
			cp := *st.snap.Load()
			cp.rev = rev
			st.snap.Store(&cp)
			continue
		}
		for _, ev := range wr.Events {
			rev = max(rev, ev.Kv.ModRevision)
			key := string(ev.Kv.Key)
			switch ev.Type {
			case mvccpb.PUT:
				st.put(st.recs, key, ev.Kv.Value)
			case mvccpb.DELETE:
				delete(st.recs, key)
			}
		}
		st.snap.Store(build(st.recs, rev))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch closed")
}

// waitRev waits, at most 2 s, until the snapshot includes revision rev:
// an API write answers once this edge applies it.
func (st *state) waitRev(ctx context.Context, rev int64) {
	waitFor(ctx, func() bool { return st.snap.Load().rev >= rev })
}

// waitFor waits, at most 2 s, until done.
func waitFor(ctx context.Context, done func() bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
