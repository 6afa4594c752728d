package accessverify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func TestCertsURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"app.example.com", "https://app.example.com/cdn-cgi/access/certs"},
		{"https://app.example.com/", "https://app.example.com/cdn-cgi/access/certs"},
		{"http://app.localhost:8080", "http://app.localhost:8080/cdn-cgi/access/certs"},
		{"widgetcorp", ""},
		{"", ""},
		{"ftp://app.example.com", ""},
		{"https://user@app.example.com", ""},
	} {
		got, err := CertsURL(tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestVerify checks JWTs against a JWKS served on loopback: the team's
// (TeamName 127.0.0.1, as the edge serves it on every protected hostname).
func TestVerify(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != CertsPath {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(set)
	}))
	defer srv.Close()
	var ahead atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	v, err := New(context.Background(), Config{TeamName: srv.URL, AUDTags: []string{"aud-a"}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	const team = "http://127.0.0.1"
	mk := func(k *ecdsa.PrivateKey, kid, iss, aud string, exp time.Time) string {
		sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: kid}}, nil)
		cl := map[string]any{"aud": aud, "exp": exp.Unix(), "email": "ann@example.com", "groups": []string{"eng"}}
		if iss != "" {
			cl["iss"] = iss
		}
		tok, _ := jwt.Signed(sig).Claims(cl).Serialize()
		return tok
	}
	valid := mk(key, "k1", team, "aud-a", now.Add(time.Hour))
	for _, tc := range []struct {
		name, tok, host, err string
	}{
		{"valid", valid, "", ""},
		{"issued for the request's hostname", mk(key, "k1", "https://app.example.com", "aud-a", now.Add(time.Hour)), "App.example.com:443", ""},
		{"expired", mk(key, "k1", team, "aud-a", now.Add(-time.Minute)), "", "expired"},
		{"other application", mk(key, "k1", team, "aud-b", now.Add(time.Hour)), "", "another application"},
		{"no issuer", mk(key, "k1", "", "aud-a", now.Add(time.Hour)), "", "issuer"},
		{"issued for another hostname", mk(key, "k1", "https://other.example.com", "aud-a", now.Add(time.Hour)), "app.example.com", "issuer"},
		{"issuer with a path", mk(key, "k1", team+"/x", "aud-a", now.Add(time.Hour)), "", "issuer"},
		{"another team's key", mk(other, "k1", team, "aud-a", now.Add(time.Hour)), "", "verify"},
		{"another team's key ID", mk(other, "k2", team, "aud-a", now.Add(time.Hour)), "", "verify"},
		{"empty", "", "", "no Access JWT"},
		{"garbage", "a.b.c", "", ""},
	} {
		c, err := v.VerifyHost(context.Background(), tc.tok, tc.host)
		switch {
		case tc.err == "" && tc.name != "garbage":
			if err != nil || c.Email != "ann@example.com" || strings.Join(c.Groups, ",") != "eng" {
				t.Errorf("%s: %+v, %v", tc.name, c, err)
			}
		case err == nil:
			t.Errorf("%s: accepted", tc.name)
		case tc.err != "" && !strings.Contains(err.Error(), tc.err):
			t.Errorf("%s: error %q, want it to say %q", tc.name, err, tc.err)
		}
	}
	// A JWT verified once is kept: no fetch, no signature check; its
	// expiry still counts.
	srv.Close()
	if _, err := v.Verify(context.Background(), valid); err != nil {
		t.Errorf("a verified JWT, the keys out of reach: %v", err)
	}
	ahead.Store(int64(2 * time.Hour))
	if _, err := v.Verify(context.Background(), valid); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("a kept JWT past its expiry: %v, want expired", err)
	}
}
