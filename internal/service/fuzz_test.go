package service

import (
	"encoding/xml"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// unquoteExec reads one ExecStart= argument as systemd does, for the forms
// quoteExecArg writes: a bare word, or a double-quoted one with \\ and \"
// escapes; then %% and $$ are a literal % and $ (a lone one would be a
// specifier or a variable).
func unquoteExec(s string) (string, error) {
	if strings.HasPrefix(s, `"`) {
		if len(s) < 2 || !strings.HasSuffix(s, `"`) {
			return "", errors.New("unterminated quote")
		}
		var b strings.Builder
		in := s[1 : len(s)-1]
		for i := 0; i < len(in); i++ {
			switch in[i] {
			case '\\':
				if i+1 == len(in) || (in[i+1] != '\\' && in[i+1] != '"') {
					return "", errors.New("an escape systemd would read otherwise")
				}
				i++
				b.WriteByte(in[i])
			case '"':
				return "", errors.New("a bare quote inside quotes")
			default:
				b.WriteByte(in[i])
			}
		}
		s = b.String()
	} else if s == "" || strings.ContainsAny(s, " \t\"'\\;") {
		return "", errors.New("a bare word systemd would split or unquote")
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '%' || c == '$' {
			if i+1 == len(s) || s[i+1] != c {
				return "", errors.New("a lone % or $")
			}
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String(), nil
}

// FuzzQuoteExecArg: every argument check() lets through comes back whole
// from systemd's reading of what quoteExecArg writes.
func FuzzQuoteExecArg(f *testing.F) {
	for _, s := range []string{"/usr/local/bin/adit", "/etc/adit dir/config.yml", "50%", "$HOME", `a"b\c`, ";", "", "'x'", "%d/token"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return // check() refuses these
		}
		q := quoteExecArg(s)
		got, err := unquoteExec(q)
		if err != nil || got != s {
			t.Fatalf("quoteExecArg(%q) = %q, read back as %q (%v)", s, q, got, err)
		}
	})
}

// FuzzLaunchdPlist: the plist is well-formed XML whatever the paths and
// user check() accepts, and its ProgramArguments and UserName read back
// as given.
func FuzzLaunchdPlist(f *testing.F) {
	f.Add("/usr/local/bin/adit", "/etc/adit/token", "adit")
	f.Add("/Applications/a&b <c>/adit", "/Users/me/.adit/]]>token", "")
	f.Fuzz(func(t *testing.T, bin, token, user string) {
		for _, s := range []string{bin, token, user} {
			if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == 0xfffd || r == 0xfffe || r == 0xffff }) {
				return
			}
		}
		b, err := LaunchdPlist(Config{OS: "darwin", Binary: bin, User: user}, token, "", "")
		if err != nil {
			t.Fatal(err)
		}
		d := xml.NewDecoder(strings.NewReader(string(b)))
		d.Strict = true
		var top struct {
			Dict plistDict `xml:"dict"`
		}
		if err := d.Decode(&top); err != nil {
			t.Fatalf("not XML: %v\n%s", err, b)
		}
		items := top.Dict.Items
		got := map[string]plistItem{}
		for i := 0; i+1 < len(items); i += 2 {
			got[items[i].Text] = items[i+1]
		}
		var args []string
		for _, a := range got["ProgramArguments"].Items {
			args = append(args, a.Text)
		}
		want := []string{bin, "tunnel", "run", "--token-file", token}
		if token == "" {
			want = want[:3] // an empty name is not used (LaunchdPlist)
		}
		if !slices.Equal(args, want) {
			t.Fatalf("ProgramArguments = %q, want %q", args, want)
		}
		if got["UserName"].Text != user {
			t.Fatalf("UserName = %q, want %q", got["UserName"].Text, user)
		}
	})
}
