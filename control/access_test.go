package control

import (
	"strings"
	"testing"
)

func TestParseAccessRule(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"email:Ann@Example.com", "email:ann@example.com", ""},
		{"email_domain:@Example.COM", "email_domain:example.com", ""},
		{"group:Eng Team", "group:Eng Team", ""},
		{"ip:10.1.2.3/8", "ip:10.0.0.0/8", ""},
		{"ip:::ffff:10.0.0.1", "ip:10.0.0.1/32", ""},
		{"ip:2001:db8::/32", "ip:2001:db8::/32", ""},
		{"service_token:ci", "service_token:ci", ""},
		{"any_valid_service_token", "any_valid_service_token", ""},
		{"everyone", "everyone", ""},
		{"everyone:x", "", "takes no value"},
		{"email:", "", "needs a value"},
		{"email:nobody", "", "not an email"},
		{"email_domain:*.example.com", "", "not a domain"},
		{"ip:10.0.0.300", "", "not an IP"},
		{"service_token:a b", "", "not allowed"},
		{"mail:x", "", "unknown kind"},
		{"group:a\nb", "", "control character"},
	} {
		r, err := ParseAccessRule(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one saying %q", tc.in, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.err == "" && r.String() != tc.want:
			t.Errorf("%q: got %q, want %q", tc.in, r.String(), tc.want)
		}
	}
}

func TestParseAccessDomain(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"App.Example.com", "app.example.com"},
		{"https://app.example.com/", "app.example.com"},
		{"app.example.com/Admin/", "app.example.com/Admin"},
		{"app.example.com//a//b", "app.example.com/a/b"},
		{"*.example.com/x", "*.example.com/x"},
		{"app.example.com/../x", ""},
		{"app.example.com/a?b", ""},
		{"10.0.0.1", ""},
		{"", ""},
	} {
		got, _, _, err := ParseAccessDomain(tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// FuzzParseAccessRule: a rule that parses prints a canonical form that
// parses to itself.
func FuzzParseAccessRule(f *testing.F) {
	for _, s := range []string{"email:a@b.c", "email_domain:example.com", "group:eng", "ip:10.0.0.0/8", "ip:::1",
		"service_token:ci", "any_valid_service_token", "everyone", "ip:::ffff:1.2.3.4/120"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseAccessRule(s)
		if err != nil {
			return
		}
		r2, err := ParseAccessRule(r.String())
		if err != nil {
			t.Fatalf("%q parsed as %q, which does not parse: %v", s, r.String(), err)
		}
		if r2.String() != r.String() {
			t.Fatalf("%q: canonical %q re-parses as %q", s, r.String(), r2.String())
		}
	})
}

// FuzzParseAccessDomain: the canonical domain is a fixed point, and its
// path has no dot segments.
func FuzzParseAccessDomain(f *testing.F) {
	for _, s := range []string{"app.example.com", "app.example.com/a/b", "*.example.com/x/", "https://A.example.com//x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		canon, _, p, err := ParseAccessDomain(s)
		if err != nil {
			return
		}
		again, _, _, err := ParseAccessDomain(canon)
		if err != nil || again != canon {
			t.Fatalf("%q → %q → %q, %v", s, canon, again, err)
		}
		for seg := range strings.SplitSeq(p, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q: path %q keeps a dot segment", s, p)
			}
		}
	})
}
