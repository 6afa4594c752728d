package fleet

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/pki"
	"github.com/adit-dev/adit/internal/store"
)

// FuzzParseToken: whatever parses prints back as the same token, and a
// parsed token's parts have their sizes.
func FuzzParseToken(f *testing.F) {
	ca, _, err := pki.NewCA("fuzz")
	if err != nil {
		f.Fatal(err)
	}
	tok, err := NewToken(ca)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok.String())
	f.Add(" " + tok.String() + "\n")
	f.Add("aditjoin." + strings.Repeat("a", 64) + ".0123456789abcdef." + strings.Repeat("A", 43))
	f.Add("aditjoin....")
	f.Add("aditjoin.x.y.z")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		if got := tok.String(); got != strings.TrimSpace(s) {
			t.Fatalf("ParseToken(%q).String() = %q", s, got)
		}
		if len(tok.CAHash) != 64 || len(tok.ID) != 16 || len(tok.Secret) != 43 {
			t.Fatalf("ParseToken(%q) = %+v: bad part sizes", s, tok)
		}
		again, err := ParseToken(tok.String())
		if err != nil || again != tok {
			t.Fatalf("reparse of %q: %+v, %v", tok.String(), again, err)
		}
	})
}

func TestParseTokenErrors(t *testing.T) {
	ca, _, _ := pki.NewCA("t")
	tok, _ := NewToken(ca)
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "want aditjoin."},
		{"other prefix", strings.Replace(tok.String(), "aditjoin", "K10", 1), "want aditjoin."},
		{"short hash", "aditjoin.abc." + tok.ID + "." + tok.Secret, "CA hash"},
		{"upper hash", "aditjoin." + strings.ToUpper(tok.CAHash) + "." + tok.ID + "." + tok.Secret, "CA hash"},
		{"bad id", "aditjoin." + tok.CAHash + ".xyz." + tok.Secret, "ID"},
		{"short secret", "aditjoin." + tok.CAHash + "." + tok.ID + ".abc", "secret"},
		{"too long", tok.String() + strings.Repeat("x", 300), "too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseToken(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestTokens: a join token made is listed, checks out with its secret and
// CA only, and works no more once revoked; requests are checked.
func TestTokens(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cli := st.Client()
	ca, _, _ := pki.NewCA("fleet")
	otherCA, _, _ := pki.NewCA("other")
	tok, info, err := CreateToken(ctx, cli, ca, control.CreateJoinTokenRequest{Description: "test", TTL: 600})
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != tok.ID || info.ExpiresAt == nil || info.ExpiresAt.Sub(info.CreatedAt).Seconds() != 600 {
		t.Errorf("token info: %+v", info)
	}
	ts, err := ListTokens(ctx, cli)
	if err != nil || len(ts) != 1 || ts[0].ID != tok.ID || ts[0].Description != "test" {
		t.Errorf("ListTokens: %+v, %v", ts, err)
	}
	if err := CheckToken(ctx, cli, tok, ca); err != nil {
		t.Errorf("CheckToken: %v", err)
	}
	wrong := tok
	wrong.Secret = strings.Repeat("A", 43)
	if err := CheckToken(ctx, cli, wrong, ca); !errors.Is(err, ErrBadToken) {
		t.Errorf("wrong secret: got %v, want ErrBadToken", err)
	}
	if err := CheckToken(ctx, cli, tok, otherCA); !errors.Is(err, ErrBadToken) {
		t.Errorf("another CA: got %v, want ErrBadToken", err)
	}
	if err := RevokeToken(ctx, cli, tok.ID); err != nil {
		t.Fatal(err)
	}
	if err := CheckToken(ctx, cli, tok, ca); !errors.Is(err, ErrBadToken) {
		t.Errorf("revoked: got %v, want ErrBadToken", err)
	}
	if err := RevokeToken(ctx, cli, tok.ID); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("revoke twice: got %v, want ErrNotFound", err)
	}
	for _, req := range []control.CreateJoinTokenRequest{{TTL: -1}, {TTL: 400 * 86400}, {Description: strings.Repeat("x", 201)}, {Description: "a\x00b"}} {
		if _, _, err := CreateToken(ctx, cli, ca, req); !errors.Is(err, control.ErrInvalid) {
			t.Errorf("CreateToken(%+v): got %v, want ErrInvalid", req, err)
		}
	}
}

func TestCheckJoinRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  control.JoinRequest
		want string // "" for valid
	}{
		{"ok", control.JoinRequest{Name: "edge-b", PeerURL: "https://10.0.0.2:7846", Version: "v1.2.3"}, ""},
		{"comma in name", control.JoinRequest{Name: "a,b", PeerURL: "https://10.0.0.2:7846"}, "name:"},
		{"equals in name", control.JoinRequest{Name: "a=b", PeerURL: "https://10.0.0.2:7846"}, "name:"},
		{"http peer", control.JoinRequest{Name: "b", PeerURL: "http://10.0.0.2:7846"}, "peer_url:"},
		{"no port", control.JoinRequest{Name: "b", PeerURL: "https://10.0.0.2"}, "peer_url:"},
		{"path", control.JoinRequest{Name: "b", PeerURL: "https://10.0.0.2:1/x"}, "peer_url:"},
		{"version with space", control.JoinRequest{Name: "b", PeerURL: "https://10.0.0.2:1", Version: "v 1"}, "version:"},
		{"long version", control.JoinRequest{Name: "b", PeerURL: "https://10.0.0.2:1", Version: strings.Repeat("v", 129)}, "version:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckJoinRequest(tc.req)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}
