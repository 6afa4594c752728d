package edgedns

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"unicode"
)

// A RegionRule says which regions' edges are nearest to clients in
// Prefix, nearest first. The text form (a --dns-client-region flag, a
// line of a --dns-client-regions-file) is
//
//	PREFIX=REGION[,REGION...]
//
// PREFIX a CIDR ("10.0.0.0/8", "2001:db8::/32") or one address; each
// REGION an edge's --region label. Example: "192.0.2.0/24=eu-west,eu-central".
type RegionRule struct {
	Prefix  netip.Prefix
	Regions []string
}

// Bounds on a region map: what an operator writes by hand or generates
// from a geo database stays well inside them.
const (
	maxRegionsPerRule = 16
	maxRegionLen      = 64
	// MaxRegionRules bounds a whole region map.
	MaxRegionRules = 1 << 20
	maxRuleLineLen = 4096
)

// ParseRegionRule parses a rule's text form.
func ParseRegionRule(s string) (RegionRule, error) {
	prefix, regions, ok := strings.Cut(s, "=")
	if !ok {
		return RegionRule{}, fmt.Errorf("%q: want PREFIX=REGION[,REGION...]", s)
	}
	prefix = strings.TrimSpace(prefix)
	var r RegionRule
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		a, aerr := netip.ParseAddr(prefix)
		if aerr != nil {
			return RegionRule{}, fmt.Errorf("%q: %q is not a CIDR or an IP address", s, prefix)
		}
		if a.Zone() != "" {
			return RegionRule{}, fmt.Errorf("%q: an address with a zone (%%) is not a client subnet", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		return RegionRule{}, fmt.Errorf("%q: an IPv4-mapped prefix; write it as IPv4", s)
	}
	r.Prefix = p.Masked()
	for region := range strings.SplitSeq(regions, ",") {
		region = strings.TrimSpace(region)
		if err := checkRegion(region); err != nil {
			return RegionRule{}, fmt.Errorf("%q: region %w", s, err)
		}
		if slices.Contains(r.Regions, region) {
			return RegionRule{}, fmt.Errorf("%q: region %q is listed twice", s, region)
		}
		r.Regions = append(r.Regions, region)
	}
	if len(r.Regions) > maxRegionsPerRule {
		return RegionRule{}, fmt.Errorf("%q: %d regions, the limit is %d", s, len(r.Regions), maxRegionsPerRule)
	}
	return r, nil
}

// checkRegion accepts what an edge's --region may be: 1-64 printable
// characters, no space or comma.
func checkRegion(region string) error {
	if region == "" {
		return fmt.Errorf("is empty")
	}
	if len(region) > maxRegionLen {
		return fmt.Errorf("%q is longer than %d bytes", region, maxRegionLen)
	}
	for _, c := range region {
		if !unicode.IsPrint(c) || unicode.IsSpace(c) || c == ',' || c == '=' || c == '#' {
			return fmt.Errorf("%q has a space, a comma, '=', '#' or an unprintable character", region)
		}
	}
	return nil
}

// String is the rule's text form, which ParseRegionRule reads back.
func (r RegionRule) String() string {
	return r.Prefix.String() + "=" + strings.Join(r.Regions, ",")
}

// ParseRegionRules reads a region map file: one rule a line in the text
// form, blank lines and lines starting with '#' skipped. An error names
// the line.
func ParseRegionRules(r io.Reader) ([]RegionRule, error) {
	var rules []RegionRule
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxRuleLineLen)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		rule, err := ParseRegionRule(s)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if len(rules) == MaxRegionRules {
			return nil, fmt.Errorf("line %d: more than %d rules", line, MaxRegionRules)
		}
		rules = append(rules, rule)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	return rules, nil
}

// regionMap finds the rule of the longest prefix holding a client
// subnet: one map per prefix length and family, so a lookup costs at most
// one map probe per length in use.
type regionMap struct {
	n     int
	byLen [2]map[int]map[netip.Prefix]RegionRule // [0] IPv4, [1] IPv6
	lens  [2][]int                               // lengths in use, longest first
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// newRegionMap indexes rules for lookup; of two rules with the same
// prefix, the later one wins (a flag given after a file overrides it).
func newRegionMap(rules []RegionRule) (*regionMap, error) {
	if len(rules) > MaxRegionRules {
		return nil, fmt.Errorf("%d client region rules, the limit is %d", len(rules), MaxRegionRules)
	}
	m := &regionMap{byLen: [2]map[int]map[netip.Prefix]RegionRule{{}, {}}}
	for _, r := range rules {
		if !r.Prefix.IsValid() || len(r.Regions) == 0 {
			return nil, fmt.Errorf("client region rule %q: a prefix and at least one region are required", r)
		}
		r.Prefix = netip.PrefixFrom(r.Prefix.Addr().Unmap(), r.Prefix.Bits()).Masked()
		f, l := family(r.Prefix.Addr()), r.Prefix.Bits()
		byPrefix := m.byLen[f][l]
		if byPrefix == nil {
			byPrefix = make(map[netip.Prefix]RegionRule)
			m.byLen[f][l] = byPrefix
			m.lens[f] = append(m.lens[f], l)
		}
		if _, ok := byPrefix[r.Prefix]; !ok {
			m.n++
		}
		byPrefix[r.Prefix] = r
	}
	for f := range m.lens {
		slices.Sort(m.lens[f])
		slices.Reverse(m.lens[f])
	}
	return m, nil
}

// lookup returns the rule for a client subnet: the longest prefix that
// holds all of it (a rule narrower than the subnet cannot be decided).
func (m *regionMap) lookup(subnet netip.Prefix) (RegionRule, bool) {
	if m == nil || !subnet.IsValid() {
		return RegionRule{}, false
	}
	a := subnet.Addr().Unmap()
	bits := subnet.Bits()
	if subnet.Addr().Is4In6() {
		bits = max(bits-96, 0)
	}
	f := family(a)
	for _, l := range m.lens[f] {
		if l > bits {
			continue
		}
		p, _ := a.Prefix(l)
		if r, ok := m.byLen[f][l][p]; ok {
			return r, true
		}
	}
	return RegionRule{}, false
}

func (m *regionMap) empty() bool { return m == nil || m.n == 0 }
