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

// TestVerify checks JWTs against a JWKS served on loopback.
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
	v, err := New(context.Background(), Config{TeamName: srv.URL, AUDTags: []string{"aud-a"}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	mk := func(k *ecdsa.PrivateKey, kid, aud string, exp time.Time) string {
		sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: kid}}, nil)
		tok, _ := jwt.Signed(sig).Claims(map[string]any{"aud": []string{aud}, "exp": exp.Unix(), "email": "ann@example.com", "groups": []string{"eng"}}).Serialize()
		return tok
	}
	for _, tc := range []struct {
		name, tok, err string
	}{
		{"valid", mk(key, "k1", "aud-a", now.Add(time.Hour)), ""},
		{"expired", mk(key, "k1", "aud-a", now.Add(-time.Minute)), "expired"},
		{"other application", mk(key, "k1", "aud-b", now.Add(time.Hour)), "another application"},
		{"forged", mk(other, "k1", "aud-a", now.Add(time.Hour)), "verify"},
		{"unknown key", mk(other, "k2", "aud-a", now.Add(time.Hour)), "verify"},
		{"empty", "", "no Access JWT"},
		{"garbage", "a.b.c", ""},
	} {
		c, err := v.Verify(context.Background(), tc.tok)
		switch {
		case tc.name == "valid":
			if err != nil || c.Email != "ann@example.com" || strings.Join(c.Groups, ",") != "eng" {
				t.Errorf("%s: %+v, %v", tc.name, c, err)
			}
		case err == nil:
			t.Errorf("%s: accepted", tc.name)
		case tc.err != "" && !strings.Contains(err.Error(), tc.err):
			t.Errorf("%s: error %q, want it to say %q", tc.name, err, tc.err)
		}
	}
}
