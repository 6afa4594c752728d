package access

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/poll"
)

// sessionCookie is the session cookie c holds for host.
func sessionCookie(t testing.TB, c *http.Client, u string) string {
	t.Helper()
	pu, _ := url.Parse(u)
	for _, ck := range c.Jar.Cookies(pu) {
		if ck.Name == SessionCookie {
			return ck.Value
		}
	}
	t.Fatalf("no session cookie for %s", u)
	return ""
}

// status is the status of a GET with the session tok, as a script sends it.
func status(t testing.TB, s *edgeSide, tok string) int {
	t.Helper()
	resp := get(t, s.browser(t), s.appURL("app.localhost", "/"), false, CFTokenHeader, tok)
	body(t, resp)
	return resp.StatusCode
}

// waitRefused waits until side s refuses tok (401), at most 2 s after start.
func waitRefused(t testing.TB, s *edgeSide, tok, what string, start time.Time) {
	t.Helper()
	if !poll.Within(2*time.Second-time.Since(start), func() bool { return status(t, s, tok) == http.StatusUnauthorized }) {
		t.Fatalf("%s: still accepted after %v", what, time.Since(start))
	}
	t.Logf("%s: refused %v after the revocation", what, time.Since(start))
}

// TestLogoutRevokes: a session ended at /.adit/logout is refused by every
// edge on the same etcd within a second or two, and by one started later.
func TestLogoutRevokes(t *testing.T) {
	f := newFixture(t)
	a := f.side
	b := startSide(t, f.cli, Config{})
	c := a.browser(t)
	decodeSeen(t, login(t, c, a.appURL("app.localhost", "/"), ann))
	tok := sessionCookie(t, c, a.appURL("app.localhost", "/"))
	for i, s := range []*edgeSide{a, b} {
		if got := status(t, s, tok); got != 200 {
			t.Fatalf("side %d before logout: %d, want 200", i, got)
		}
	}
	start := time.Now()
	resp := get(t, c, a.appURL("app.localhost", "/.adit/logout"), true)
	if body(t, resp); resp.StatusCode != 200 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if got := status(t, a, tok); got != http.StatusUnauthorized {
		t.Errorf("the logging-out side still accepts the session: %d", got)
	}
	waitRefused(t, b, tok, "the other side", start)
	if got := status(t, startSide(t, f.cli, Config{}), tok); got != http.StatusUnauthorized {
		t.Errorf("a side started after the logout accepts the session: %d", got)
	}
	// Another login works.
	decodeSeen(t, login(t, a.browser(t), a.appURL("app.localhost", "/"), ann))
}

// TestRevokeSessions: an operator revokes one person's sessions of an
// application, then all of them; sessions issued after work.
func TestRevokeSessions(t *testing.T) {
	f := newFixture(t)
	a := f.side
	b := startSide(t, f.cli, Config{})
	k := a.l.st.snap.Load().signer(time.Now())
	now := time.Now()
	mint := func(email string, iat time.Time) string {
		tok, err := sign(k, testSession(f.app.AUD, "app.localhost", email, iat, iat.Add(time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	annTok, carolTok := mint("ann@example.com", now), mint("carol@example.com", now)
	for _, tok := range []string{annTok, carolTok} {
		if got := status(t, b, tok); got != 200 {
			t.Fatalf("before: %d, want 200", got)
		}
	}
	var out control.AccessSessionsRevoked
	start := time.Now()
	a.mustCall(t, "POST", "/v1/access/apps/app/revoke-sessions", control.RevokeAccessSessionsRequest{Email: "ANN@example.com"}, &out)
	if out.App != "app" || out.Email != "ann@example.com" || !out.IssuedBefore.After(now) {
		t.Errorf("answer %+v", out)
	}
	waitRefused(t, b, annTok, "ann's session", start)
	if got := status(t, b, carolTok); got != 200 {
		t.Errorf("carol's session after ann's were revoked: %d, want 200", got)
	}
	start = time.Now()
	a.mustCall(t, "POST", "/v1/access/apps/app/revoke-sessions", nil, &out)
	waitRefused(t, b, carolTok, "every session", start)
	// Written again, a revocation keeps one lease.
	leases := func() int {
		resp, err := f.cli.Leases(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.Leases)
	}
	n := leases()
	a.mustCall(t, "POST", "/v1/access/apps/app/revoke-sessions", nil, &out)
	if got := leases(); got != n {
		t.Errorf("leases after revoking again: %d, want %d", got, n)
	}
	if got := status(t, b, mint("carol@example.com", out.IssuedBefore)); got != 200 {
		t.Errorf("a session issued after the revocation: %d, want 200", got)
	}
	for _, tc := range []struct {
		path string
		in   any
		want int
	}{
		{"/v1/access/apps/nope/revoke-sessions", nil, 404},
		{"/v1/access/apps/app/revoke-sessions", control.RevokeAccessSessionsRequest{Email: "not an address"}, 400},
	} {
		if got := a.call(t, "POST", tc.path, tc.in, nil); got != tc.want {
			t.Errorf("POST %s %+v: %d, want %d", tc.path, tc.in, got, tc.want)
		}
	}
}
