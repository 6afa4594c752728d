package credentials

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

const testID = "6ff42ae2-765d-4adf-8112-31c55c1551ef"

var testSecret = bytes.Repeat([]byte{0xfb, 0x01, 0x7e}, 11) // 33 bytes; base64 has + and /

func testFile() *File {
	return &File{
		AccountTag:   "699d98642c564d2e855e9661899b7252",
		TunnelID:     testID,
		TunnelSecret: testSecret,
		TunnelName:   "web",
		EdgeAddrs:    []string{"edge.example.com:7844", "[::1]:7844"},
		EdgeCA:       "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
	}
}

func sameFile(a, b *File) bool {
	return a.AccountTag == b.AccountTag && a.TunnelID == b.TunnelID &&
		bytes.Equal(a.TunnelSecret, b.TunnelSecret) && a.TunnelName == b.TunnelName &&
		slices.Equal(a.EdgeAddrs, b.EdgeAddrs) && a.EdgeCA == b.EdgeCA
}

// sameTokenFields compares what a token carries (no TunnelName).
func sameTokenFields(a, b *File) bool {
	a2, b2 := *a, *b
	a2.TunnelName, b2.TunnelName = "", ""
	if len(a2.EdgeAddrs) == 0 {
		a2.EdgeAddrs = nil
	}
	if len(b2.EdgeAddrs) == 0 {
		b2.EdgeAddrs = nil
	}
	return sameFile(&a2, &b2)
}

func TestSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", testID+".json")
	want := testFile()
	if err := want.Save(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !sameFile(got, want) {
		t.Errorf("Load = %+v, want %+v", got, want)
	}
	// The secret is written the way cloudflared writes it: standard padded base64.
	var raw map[string]any
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	if got, want := raw["TunnelSecret"], base64.StdEncoding.EncodeToString(testSecret); got != want {
		t.Errorf("TunnelSecret on disk = %v, want %v", got, want)
	}

	t.Run("overwrite tightens mode", func(t *testing.T) {
		os.Chmod(path, 0o644)
		if err := want.Save(path); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(path)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
		}
	})
}

func TestLoadCloudflared(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cf.json")
	secret := base64.StdEncoding.EncodeToString(testSecret)
	data := `{"AccountTag":"699d98642c564d2e855e9661899b7252","TunnelSecret":"` + secret + `","TunnelID":"` + testID + `","Endpoint":""}`
	os.WriteFile(path, []byte(data), 0o600)
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.TunnelID != testID || !bytes.Equal(f.TunnelSecret, testSecret) || f.AccountTag != "699d98642c564d2e855e9661899b7252" {
		t.Errorf("Load = %+v, want the cloudflared fields", f)
	}
	if len(f.EdgeAddrs) != 0 || f.EdgeCA != "" {
		t.Errorf("EdgeAddrs, EdgeCA = %v, %q; want empty", f.EdgeAddrs, f.EdgeCA)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	secret := base64.StdEncoding.EncodeToString(testSecret)
	short := base64.StdEncoding.EncodeToString(testSecret[:16])
	for _, tc := range []struct {
		name, data, want string
	}{
		{"not json", `hello`, "not a JSON credentials file"},
		{"missing id", `{"TunnelSecret":"` + secret + `"}`, "TunnelID: missing"},
		{"bad id", `{"TunnelID":"not-a-uuid-at-all-but-thirty-six-chars","TunnelSecret":"` + secret + `"}`, "TunnelID: not a UUID"},
		{"raw hex id", `{"TunnelID":"6ff42ae2765d4adf811231c55c1551ef","TunnelSecret":"` + secret + `"}`, "TunnelID: not a UUID"},
		{"missing secret", `{"TunnelID":"` + testID + `"}`, "TunnelSecret: missing"},
		{"short secret", `{"TunnelID":"` + testID + `","TunnelSecret":"` + short + `"}`, "TunnelSecret: 16 bytes, want at least 32"},
		{"bad base64", `{"TunnelID":"` + testID + `","TunnelSecret":"` + secret + `!!"}`, "TunnelSecret: not base64"},
		{"wrong type", `{"TunnelID":7,"TunnelSecret":"` + secret + `"}`, "TunnelID: want a JSON string"},
		{"bad edge addr", `{"TunnelID":"` + testID + `","TunnelSecret":"` + secret + `","EdgeAddrs":["nope"]}`, "EdgeAddrs[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".json")
			os.WriteFile(path, []byte(tc.data), 0o600)
			_, err := Load(path)
			if err == nil {
				t.Fatal("got nil error, want one")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error = %q, want it to contain %q and the path", err, tc.want)
			}
			if strings.Contains(err.Error(), secret[:20]) {
				t.Errorf("error %q leaks the secret", err)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(dir, "absent.json")
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("error = %v, want one naming %s", err, path)
		}
	})
}

func TestTokenRoundTrip(t *testing.T) {
	want := testFile()
	tok, err := want.Token()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(tok)
	if err != nil {
		t.Fatalf("token is not padded standard base64: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "t", "s", "e", "c"} {
		if _, ok := m[k]; !ok {
			t.Errorf("token JSON lacks %q: %s", k, raw)
		}
	}
	if m["s"] != base64.StdEncoding.EncodeToString(testSecret) {
		t.Errorf("s = %v, want base64 of the secret", m["s"])
	}

	url := base64.RawURLEncoding.EncodeToString(raw)
	for _, tc := range []struct{ name, in string }{
		{"std padded", tok},
		{"std unpadded", strings.TrimRight(tok, "=")},
		{"url unpadded", url},
		{"url padded", base64.URLEncoding.EncodeToString(raw)},
		{"whitespace", "\n  " + tok + " \r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseToken(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !sameTokenFields(got, want) {
				t.Errorf("ParseToken = %+v, want %+v", got, want)
			}
		})
	}
}

func TestParseTokenCloudflared(t *testing.T) {
	sec := base64.StdEncoding.EncodeToString(testSecret)
	for _, tc := range []struct{ name, json string }{
		{"a t s", `{"a":"acct","t":"` + testID + `","s":"` + sec + `"}`},
		{"endpoint region", `{"a":"acct","t":"` + testID + `","s":"` + sec + `","e":"fed"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ParseToken(base64.StdEncoding.EncodeToString([]byte(tc.json)))
			if err != nil {
				t.Fatal(err)
			}
			if f.AccountTag != "acct" || f.TunnelID != testID || !bytes.Equal(f.TunnelSecret, testSecret) || len(f.EdgeAddrs) != 0 {
				t.Errorf("ParseToken = %+v, want a/t/s only", f)
			}
		})
	}
}

func TestParseTokenErrors(t *testing.T) {
	sec := base64.StdEncoding.EncodeToString(testSecret)
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct{ name, in, want string }{
		{"empty", " \n", "token: empty"},
		{"not base64", "%%%" + sec, "not base64"},
		{"not json", enc("s=" + sec), "bad JSON"},
		{"no id", enc(`{"s":"` + sec + `"}`), "TunnelID: missing"},
		{"short secret", enc(`{"t":"` + testID + `","s":"AAAA"}`), "TunnelSecret: 3 bytes"},
		{"bad secret", enc(`{"t":"` + testID + `","s":"` + sec + `#"}`), `"s": not base64`},
		{"bad e", enc(`{"t":"` + testID + `","s":"` + sec + `","e":7}`), `"e"`},
		{"trailing", enc(`{"t":"` + testID + `","s":"` + sec + `"}{}`), "data after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseToken(tc.in)
			if err == nil {
				t.Fatal("got nil error, want one")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), sec[:20]) {
				t.Errorf("error %q leaks the secret", err)
			}
		})
	}
}

func TestTokenFromSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	os.WriteFile(file, []byte("  from-file\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	env := func(k string) string {
		if k == "ADIT_TUNNEL_TOKEN" {
			return "from-env"
		}
		return ""
	}
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		name, flag, file string
		env              func(string) string
		want             string
		wantErr          bool
	}{
		{"flag wins", "from-flag", file, env, "from-flag", false},
		{"file next", "", file, env, "from-file", false},
		{"env last", "", "", env, "from-env", false},
		{"none", "", "", noEnv, "", false},
		{"missing file", "", filepath.Join(dir, "absent"), env, "", true},
		{"empty file", "", empty, env, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := TokenFromSources(tc.flag, tc.file, tc.env)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLogin(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	_, err := LoadLogin(home)
	if err == nil || !strings.Contains(err.Error(), "adit login") {
		t.Fatalf("LoadLogin with no file: error = %v, want one telling to run adit login", err)
	}
	want := &Login{API: "https://127.0.0.1:8443", Token: "tok", CAPEM: "pem"}
	if err := want.Save(home); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(home, LoginFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	got, err := LoadLogin(home)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *want {
		t.Errorf("LoadLogin = %+v, want %+v", got, want)
	}
	os.WriteFile(filepath.Join(home, LoginFile), []byte(`{"api":"x"}`), 0o600)
	if _, err := LoadLogin(home); err == nil || !strings.Contains(err.Error(), "token: missing") {
		t.Errorf("LoadLogin without token: error = %v, want token: missing", err)
	}
}

func TestHome(t *testing.T) {
	t.Setenv("ADIT_HOME", "/x/y")
	if got := Home(); got != "/x/y" {
		t.Errorf("Home() = %q, want /x/y", got)
	}
	t.Setenv("ADIT_HOME", "")
	t.Setenv("HOME", "/home/u")
	if got := Home(); got != "/home/u/.adit" {
		t.Errorf("Home() = %q, want /home/u/.adit", got)
	}
	if got := CredentialsPath("/h", testID); got != "/h/"+testID+".json" {
		t.Errorf("CredentialsPath = %q", got)
	}
}

// FuzzParseToken checks that arbitrary input never panics, that a parsed
// token re-encodes to one that parses to the same fields, and that a token
// made by Token from arbitrary fields parses back to them.
func FuzzParseToken(f *testing.F) {
	tok, _ := testFile().Token()
	f.Add(tok, "acct", testSecret, "edge:7844", "ca")
	cf := base64.StdEncoding.EncodeToString([]byte(`{"a":"acct","t":"` + testID + `","s":"` + base64.StdEncoding.EncodeToString(testSecret) + `"}`))
	f.Add(cf, "", []byte("short"), "", "")
	f.Add("  "+strings.TrimRight(tok, "=")+"\n", "a", bytes.Repeat([]byte{0}, 32), "[::1]:1", "")
	f.Add("eyJ9", "", []byte{}, "x", "y")
	f.Fuzz(func(t *testing.T, in, acct string, secret []byte, addr, ca string) {
		if got, err := ParseToken(in); err == nil {
			tok2, err := got.Token()
			if err != nil {
				t.Fatalf("parsed token does not re-encode: %v", err)
			}
			again, err := ParseToken(tok2)
			if err != nil {
				t.Fatalf("re-encoded token does not parse: %v", err)
			}
			if !sameTokenFields(got, again) {
				t.Fatalf("re-encode changed fields: %+v then %+v", got, again)
			}
		}

		if !utf8.ValidString(acct) || !utf8.ValidString(addr) || !utf8.ValidString(ca) {
			return // JSON cannot carry invalid UTF-8
		}
		want := &File{AccountTag: acct, TunnelID: testID, TunnelSecret: secret, EdgeCA: ca}
		if addr != "" {
			want.EdgeAddrs = []string{addr}
		}
		tok, err := want.Token()
		if want.Validate() != nil {
			if err == nil {
				t.Fatal("Token accepted a file Validate rejects")
			}
			return
		}
		if err != nil {
			t.Fatalf("Token: %v", err)
		}
		got, err := ParseToken(tok)
		if err != nil {
			t.Fatalf("ParseToken(Token()) = %v", err)
		}
		if !sameTokenFields(got, want) {
			t.Fatalf("round trip: got %+v, want %+v", got, want)
		}
	})
}

// FuzzParse checks that arbitrary credentials-file bytes never panic and that
// a file that parses marshals to one that parses to the same fields.
func FuzzParse(f *testing.F) {
	good, _ := testFile().Marshal()
	f.Add(good)
	f.Add([]byte(`{"AccountTag":"a","TunnelSecret":"` + base64.StdEncoding.EncodeToString(testSecret) + `","TunnelID":"` + testID + `"}`))
	f.Add([]byte(`{"TunnelID":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Parse(data)
		if err != nil {
			return
		}
		out, err := got.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("marshalled file does not parse: %v\n%s", err, out)
		}
		if !sameFile(got, again) {
			t.Fatalf("round trip changed fields: %+v then %+v", got, again)
		}
	})
}
