package control

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseCIDR(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"10.0.0.0/8", "10.0.0.0/8", ""},
		{"10.1.2.3/8", "10.0.0.0/8", ""},
		{"192.0.2.7", "192.0.2.7/32", ""},
		{"2001:db8::1", "2001:db8::1/128", ""},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8", ""},
		{"10.0.0.0/33", "", "cidr"},
		{"example.com", "", "cidr"},
		{"", "", "cidr"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			p, err := ParseCIDR(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("ParseCIDR(%q) = %v, %v; want an invalid error naming %q", tc.in, p, err, tc.err)
				}
				return
			}
			if err != nil || p.String() != tc.want {
				t.Fatalf("ParseCIDR(%q) = %v, %v; want %s", tc.in, p, err, tc.want)
			}
		})
	}
}

// FuzzParseCIDR: what parses is canonical (masked, unmapped) and parses
// again to itself.
func FuzzParseCIDR(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::ffff:1.2.3.4/120", "1.2.3.4/0", "::/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseCIDR(s)
		if err != nil {
			return
		}
		if p != p.Masked() || p.Addr().Is4In6() {
			t.Fatalf("ParseCIDR(%q) = %v: not canonical", s, p)
		}
		q, err := ParseCIDR(p.String())
		if err != nil || q != p {
			t.Fatalf("round trip of %q: %v -> %v, %v", s, p, q, err)
		}
		if !p.Contains(p.Addr()) || p.Addr() != netip.PrefixFrom(p.Addr(), p.Bits()).Masked().Addr() {
			t.Fatalf("ParseCIDR(%q) = %v: odd prefix", s, p)
		}
	})
}

func TestShieldValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    interface{ Validate() error }
		err  string
	}{
		{"ip rule ok", &IPRule{Hostname: "*", Action: IPDeny, CIDR: "10.0.0.0/8"}, ""},
		{"ip rule bad host", &IPRule{Hostname: "bad host", Action: IPDeny, CIDR: "10.0.0.0/8"}, "hostname"},
		{"ip rule bad action", &IPRule{Hostname: "a.example.com", Action: "block", CIDR: "10.0.0.0/8"}, "action"},
		{"limit ok", &RateLimit{Hostname: "a.example.com", Requests: 5, Period: 60}, ""},
		{"limit no requests", &RateLimit{Hostname: "a.example.com", Period: 60}, "requests"},
		{"limit bad period", &RateLimit{Hostname: "a.example.com", Requests: 5, Period: 100000}, "period"},
		{"limit bad path", &RateLimit{Hostname: "a.example.com", Requests: 5, Period: 60, Path: "("}, "path"},
		{"limit bad by", &RateLimit{Hostname: "a.example.com", Requests: 5, Period: 60, By: "header:"}, "by"},
		{"limit bad action", &RateLimit{Hostname: "a.example.com", Requests: 5, Period: 60, Action: "drop"}, "action"},
		{"waf ok", &WAFConfig{Hostname: "*", Mode: WAFBlock}, ""},
		{"waf bad mode", &WAFConfig{Hostname: "*", Mode: "on"}, "mode"},
		{"waf bad paranoia", &WAFConfig{Hostname: "*", Mode: WAFBlock, Paranoia: 5}, "paranoia"},
		{"waf outbound threshold", &WAFConfig{Hostname: "*", Mode: WAFBlock, OutboundThreshold: 10}, ""},
		{"waf bad outbound threshold", &WAFConfig{Hostname: "*", Mode: WAFBlock, OutboundThreshold: 10001}, "outbound threshold"},
		{"waf bad response body limit", &WAFConfig{Hostname: "*", Mode: WAFBlock, ResponseBodyLimit: MaxWAFBodyLimit + 1}, "response body limit"},
		{"waf bad body limit", &WAFConfig{Hostname: "*", Mode: WAFBlock, BodyLimit: -1}, "body limit"},
		{"waf bad exclusion", &WAFConfig{Hostname: "*", Mode: WAFBlock, Exclusions: []WAFExclusion{{Rule: 1, Path: `a"b`}}}, "double quote"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.v.Validate()
			if tc.err == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want an error naming %q", err, tc.err)
			}
		})
	}
}

// FuzzShieldRecords: what Validate accepts it leaves canonical: validating
// again, after a JSON round trip, changes nothing and fails nothing.
func FuzzShieldRecords(f *testing.F) {
	f.Add(`{"hostname":"*","action":"deny","cidr":"10.1.2.3/8"}`, `{"hostname":"A.example.com","requests":5,"period":60,"method":"post","by":"header:X-Key"}`,
		`{"hostname":"*.example.com","mode":"block","exclusions":[{"rule":942100,"path":"^/a"}],"rules":[{"text":"SecAction \"id:1\""}]}`)
	f.Add(`{"hostname":"x","action":"allow","cidr":"::ffff:1.2.3.4"}`, `{"hostname":"*","requests":1,"period":1}`, `{"hostname":"*","mode":"detect","paranoia":4}`)
	f.Fuzz(func(t *testing.T, ip, rl, waf string) {
		check := func(v interface{ Validate() error }, fresh func() interface{ Validate() error }, in string) {
			if json.Unmarshal([]byte(in), v) != nil || v.Validate() != nil {
				return
			}
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			w := fresh()
			if err := json.Unmarshal(b, w); err != nil {
				t.Fatalf("round trip of %s: %v", b, err)
			}
			if err := w.Validate(); err != nil {
				t.Fatalf("%s validated, then not: %v", b, err)
			}
			if b2, _ := json.Marshal(w); string(b2) != string(b) {
				t.Fatalf("validate is not idempotent: %s then %s", b, b2)
			}
		}
		check(&IPRule{}, func() interface{ Validate() error } { return &IPRule{} }, ip)
		check(&RateLimit{}, func() interface{ Validate() error } { return &RateLimit{} }, rl)
		check(&WAFConfig{}, func() interface{ Validate() error } { return &WAFConfig{} }, waf)
	})
}
