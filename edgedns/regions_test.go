package edgedns

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseRegionRule(t *testing.T) {
	tests := []struct {
		in      string
		want    string // String() of the rule; empty: an error
		wantErr string
	}{
		{in: "10.0.0.0/8=eu-west", want: "10.0.0.0/8=eu-west"},
		{in: " 10.1.2.3/8 = eu-west , eu-central ", want: "10.0.0.0/8=eu-west,eu-central"},
		{in: "192.0.2.7=us", want: "192.0.2.7/32=us"},
		{in: "2001:db8::/32=ap", want: "2001:db8::/32=ap"},
		{in: "10.0.0.0/8", wantErr: "want PREFIX=REGION"},
		{in: "10.0.0.0/33=eu", wantErr: "not a CIDR"},
		{in: "example.com=eu", wantErr: "not a CIDR"},
		{in: "10.0.0.0/8=", wantErr: "region is empty"},
		{in: "10.0.0.0/8=eu,,us", wantErr: "region is empty"},
		{in: "10.0.0.0/8=eu,eu", wantErr: "listed twice"},
		{in: "10.0.0.0/8=e u", wantErr: "space"},
		{in: "::ffff:10.0.0.0/104=eu", wantErr: "IPv4-mapped"},
		{in: "fe80::1%eth0=eu", wantErr: "zone"},
		{in: "10.0.0.0/8=" + strings.Repeat("r", 65), wantErr: "longer than"},
	}
	for _, tt := range tests {
		r, err := ParseRegionRule(tt.in)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseRegionRule(%q) = %v, %v; want an error with %q", tt.in, r, err, tt.wantErr)
			}
		case err != nil || r.String() != tt.want:
			t.Errorf("ParseRegionRule(%q) = %q, %v; want %q", tt.in, r, err, tt.want)
		}
	}
}

func TestParseRegionRules(t *testing.T) {
	rules, err := ParseRegionRules(strings.NewReader("# client subnets\n\n10.0.0.0/8=eu\n  2001:db8::/32=ap,eu\n"))
	if err != nil || len(rules) != 2 || rules[1].String() != "2001:db8::/32=ap,eu" {
		t.Fatalf("ParseRegionRules = %v, %v", rules, err)
	}
	_, err = ParseRegionRules(strings.NewReader("10.0.0.0/8=eu\nnonsense\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "line 2: ") {
		t.Errorf("a bad line 2: %v, want an error naming line 2", err)
	}
}

func TestRegionMapLookup(t *testing.T) {
	m, err := newRegionMap([]RegionRule{
		mustRule(t, "10.0.0.0/8=a"),
		mustRule(t, "10.1.0.0/16=b"),
		mustRule(t, "10.1.0.0/16=c"), // a later rule for the same prefix wins
		mustRule(t, "0.0.0.0/0=default4"),
		mustRule(t, "2001:db8::/32=d"),
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		subnet string
		want   string // "" when no rule holds all of the subnet
	}{
		{"10.1.2.3/32", "c"},
		{"10.1.0.0/16", "c"},
		{"10.1.0.0/15", "a"},
		{"10.2.0.0/24", "a"},
		{"192.0.2.0/24", "default4"},
		{"::ffff:10.1.2.3/128", "c"},
		{"2001:db8:1::/48", "d"},
		{"2001:db9::/48", ""},
	}
	for _, tt := range tests {
		r, ok := m.lookup(netip.MustParsePrefix(tt.subnet))
		got := ""
		if ok {
			got = r.Regions[0]
		}
		if got != tt.want {
			t.Errorf("lookup(%s) = %q, want %q", tt.subnet, got, tt.want)
		}
	}
}

// FuzzParseRegionRule: whatever parses prints back to itself, and the
// rule's own prefix finds it in a map.
func FuzzParseRegionRule(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8=eu-west", "192.0.2.7=us,eu", "2001:db8::/32=ap", "0.0.0.0/0=x", "::/0=y", "1.2.3.4/33=z", "a=b=c", " ::ffff:1.2.3.4 = r "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRegionRule(s)
		if err != nil {
			return
		}
		again, err := ParseRegionRule(r.String())
		if err != nil || again.Prefix != r.Prefix || !slices.Equal(again.Regions, r.Regions) {
			t.Fatalf("%q parsed to %q, which parses to %q, %v", s, r, again, err)
		}
		if len(r.Regions) == 0 || len(r.Regions) > maxRegionsPerRule {
			t.Fatalf("%q: %d regions", s, len(r.Regions))
		}
		m, err := newRegionMap([]RegionRule{r})
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := m.lookup(r.Prefix); !ok || got.String() != r.String() {
			t.Fatalf("lookup(%s) = %q, %v; want the rule", r.Prefix, got, ok)
		}
	})
}
