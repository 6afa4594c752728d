package access

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/edge/layer"
	"github.com/adit-dev/adit/internal/store"
)

// FuzzSession: no token the fuzzer makes passes as a session, and a real
// one changed in any byte does not either.
func FuzzSession(f *testing.F) {
	cli := openStore(f)
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	l, err := New(layer.Deps{Ctx: ctx, Etcd: cli, Logger: slog.New(slog.DiscardHandler), Metrics: prometheus.NewRegistry()}, Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	snap := l.st.snap.Load()
	a, _ := compileApp(control.AccessApp{Name: "a", Domain: "a.example.com", AUD: "aud"})
	now := time.Now()
	valid, err := sign(snap.signer(now), testSession("aud", "a.example.com", "a@b.c", now, now.Add(time.Hour)))
	if err != nil {
		f.Fatal(err)
	}
	if l.session(snap, valid, a, "a.example.com", now) == nil {
		f.Fatal("the valid seed is refused")
	}
	f.Add(valid, 10, byte('x'))
	f.Add("eyJhbGciOiJub25lIn0.eyJhdWQiOiJhdWQifQ.", 0, byte(0))
	f.Fuzz(func(t *testing.T, tok string, at int, b byte) {
		if tok == valid {
			if at < 0 || at >= len(tok) || tok[at] == b {
				return
			}
			tok = tok[:at] + string(b) + tok[at+1:]
			// A changed base64 character can decode to the same bytes.
			if strings.TrimRight(tok, "=") == strings.TrimRight(valid, "=") {
				return
			}
		}
		if c := l.session(snap, tok, a, "a.example.com", now); c != nil {
			t.Fatalf("token %q accepted: %+v", tok, c)
		}
	})
}

// FuzzSafeRedirect: a redirect the login accepts stays on the hostname.
func FuzzSafeRedirect(f *testing.F) {
	for _, s := range []string{"/", "/x?y=1", "//evil.example", "/\\evil", "https://evil", "/a/../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, ok := safeRedirect(s)
		if !ok {
			return
		}
		if !strings.HasPrefix(r, "/") || strings.HasPrefix(r, "//") || strings.HasPrefix(r, "/\\") || strings.ContainsAny(r, "\r\n") {
			t.Fatalf("%q accepted as %q", s, r)
		}
	})
}

// TestOpenAPIDescribesEndpoints keeps docs/openapi.yaml and Endpoints in
// step: the paths marked x-adit-package: access are exactly those served.
func TestOpenAPIDescribesEndpoints(t *testing.T) {
	data, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	problems, err := controlserver.CheckDocumented(data, "access", (&Layer{}).Endpoints())
	if err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// FuzzStripSessionCookies: no session cookie reaches the origin, and the
// visitor's other cookies do, in their order.
func FuzzStripSessionCookies(f *testing.F) {
	for _, s := range []string{
		SessionCookie + "=a", "a=1; " + SessionCookie + "=x; b=2", SessionCookie + "_0123=y;" + SessionCookie + "X=z",
		";;  ; a", "=" + SessionCookie, SessionCookie,
	} {
		f.Add(s, "c=3")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		h := http.Header{"Cookie": {a, b}}
		stripSessionCookies(h)
		var want []string
		for _, line := range []string{a, b} {
			for part := range strings.SplitSeq(line, ";") {
				p := strings.TrimSpace(part)
				name, _, _ := strings.Cut(p, "=")
				if p != "" && !isSessionCookie(name) {
					want = append(want, p)
				}
			}
		}
		var got []string
		for _, line := range h["Cookie"] {
			if line == "" {
				t.Fatalf("an empty Cookie field left from %q, %q", a, b)
			}
			eachSessionCookie(http.Header{"Cookie": {line}}, func(v string) bool {
				t.Fatalf("a session cookie left in %q (from %q, %q)", line, a, b)
				return true
			})
			for part := range strings.SplitSeq(line, ";") {
				if p := strings.TrimSpace(part); p != "" {
					got = append(got, p)
				}
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("from %q, %q: kept %q, want %q", a, b, got, want)
		}
	})
}

// FuzzRevocationRecords: whatever keys and values the revocation prefix
// holds, applying them does not panic, and deleting them leaves nothing.
func FuzzRevocationRecords(f *testing.F) {
	f.Add(store.AccessRevokedSessionKey("abc"), []byte(`{"app":"a"}`))
	f.Add(store.AccessRevokedAppKey("app", ""), []byte(`{"app":"app","before":1700000000}`))
	f.Add(store.AccessRevokedAppKey("app", "ann%40example.com"), []byte(`{"app":"app","email":"ann@example.com","before":1700000000}`))
	f.Add(store.AccessRevokedAppKey("app", "%zz"), []byte(`{"before":-1}`))
	f.Fuzz(func(t *testing.T, key string, val []byte) {
		rv := &revocations{log: slog.New(slog.DiscardHandler), sessions: map[string]struct{}{}, apps: map[string]*appRevocation{}}
		rv.applyLocked(mvccpb.PUT, key, val)
		c := &claims{Email: "ann@example.com"}
		c.ID = "abc"
		rv.revoked("app", c)
		rv.applyLocked(mvccpb.DELETE, key, nil)
		if len(rv.sessions) != 0 || len(rv.apps) != 0 {
			t.Fatalf("after put and delete of %q: %d sessions, %d apps left", key, len(rv.sessions), len(rv.apps))
		}
	})
}
