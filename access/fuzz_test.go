package access

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/edge/layer"
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
