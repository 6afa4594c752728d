package accesslogin

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func fakeJWT(exp time.Time) string {
	p := base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"exp":%d}`, exp.Unix()))
	return "e30." + p + ".sig"
}

func TestStore(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "access")}
	now := time.Now()
	root, admin := fakeJWT(now.Add(time.Hour)), fakeJWT(now.Add(2*time.Hour))
	if err := s.Save("https://app.example.com", root); err != nil {
		t.Fatal(err)
	}
	if err := s.Save("https://app.example.com:8443/admin/", admin); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ url, want string }{
		{"https://app.example.com/", root},
		{"app.example.com/x/y", root},
		{"https://app.example.com/admin/panel", admin},
		{"https://APP.example.com/admin", admin},
	} {
		got, err := s.Load(tc.url, now)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.url, got, err, tc.want)
		}
	}
	if _, err := s.Load("https://other.example.com/", now); !errors.Is(err, ErrNoToken) {
		t.Errorf("another host: %v, want ErrNoToken", err)
	}
	if _, err := s.Load("https://app.example.com/", now.Add(3*time.Hour)); !errors.Is(err, ErrNoToken) {
		t.Errorf("expired: %v, want ErrNoToken", err)
	}
	fi, err := os.Stat(filepath.Join(s.Dir, "app.example.com.token"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v, %v; want mode 0600", fi, err)
	}
}

func FuzzExpiry(f *testing.F) {
	f.Add(fakeJWT(time.Unix(1700000000, 0)))
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		exp, ok := Expiry(tok)
		if !ok {
			return
		}
		// What Expiry read back out of a token made with it is the same.
		if again, ok := Expiry(fakeJWT(exp)); !ok || !again.Equal(exp) {
			t.Fatalf("%q: exp %v re-encoded reads %v, %v", tok, exp, again, ok)
		}
	})
}
