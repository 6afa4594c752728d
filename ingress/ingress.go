package ingress

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Ingress is a validated, compiled list of rules. It is safe for concurrent use;
// do not modify it after [New].
type Ingress struct {
	// Rules in config order. The last one matches every request.
	Rules []Rule
}

// Rule is one compiled ingress rule.
type Rule struct {
	// Index is the rule's 0-based position; people count from 1 (Index+1).
	Index int
	// Hostname as written: exact, "*.example.com", or "" / "*" for every hostname.
	Hostname string
	// Path matches the request's URL path; nil matches every path.
	Path *regexp.Regexp
	// Service is where matching requests go.
	Service Service
	// Origin holds the effective originRequest options, defaults filled in.
	Origin OriginRequest

	// Matching forms of Hostname: lowercase ASCII (punycode) and, for an
	// internationalized name, its Unicode form. For a wildcard these are
	// the suffix after "*" (".example.com").
	host, uhost string
	wildcard    bool
	anyHost     bool
}

// CatchAll reports whether r matches every request (cloudflared's rule: no path, and
// no hostname or "*").
func (r *Rule) CatchAll() bool { return r.anyHost && r.Path == nil }

// New validates cfg and compiles its rules. Each error names the rule (counted from 1)
// and the field. If cfg has no ingress rules, its legacy URL (or HelloWorld) becomes
// the one catch-all rule.
func New(cfg *Config) (*Ingress, error) {
	if cfg == nil {
		return nil, errors.New("ingress: no config")
	}
	if where, why := cfg.validate(); why != "" {
		return nil, fmt.Errorf("ingress: %s: %s", where, why)
	}
	if cfg.OriginRequest.Access != nil {
		if why := cfg.OriginRequest.Access.check(); why != "" {
			return nil, errors.New("ingress: originRequest: access: " + why)
		}
	}
	rules := cfg.Ingress
	switch {
	case len(rules) > 0 && cfg.URL != "":
		return nil, errors.New("ingress: both url and ingress rules are set; keep one")
	case len(rules) > 0 && cfg.HelloWorld:
		return nil, errors.New("ingress: both hello-world and ingress rules are set; keep one")
	case len(rules) == 0 && cfg.URL != "":
		rules = []RuleConfig{{Service: withScheme(cfg.URL)}}
	case len(rules) == 0 && cfg.HelloWorld:
		rules = []RuleConfig{{Service: string(KindHelloWorld)}}
	case len(rules) == 0:
		return nil, errors.New("ingress: no ingress rules; add an ingress list ending in a catch-all like \"- service: http_status:404\"")
	}
	global := cfg.OriginRequest.Apply(OriginRequest{})
	in := &Ingress{Rules: make([]Rule, len(rules))}
	for i := range rules {
		r, err := compile(&rules[i], i, global)
		if err != nil {
			return nil, fmt.Errorf("ingress: rule %d: %w", i+1, err)
		}
		last := i == len(rules)-1
		if last && !r.CatchAll() {
			return nil, fmt.Errorf("ingress: rule %d: the last rule must match every request (no path, and no hostname or \"*\"); add a catch-all like \"- service: http_status:404\" at the end", i+1)
		}
		if !last && r.CatchAll() {
			return nil, fmt.Errorf("ingress: rule %d matches every request, so rules after it are unreachable; give it a hostname or path, or move it last", i+1)
		}
		in.Rules[i] = r
	}
	return in, nil
}

// check says what a required Access check lacks: the connector verifies
// the edge's JWT against the keys at teamName, for the audTag
// applications (package access/accessverify).
func (a *Access) check() string {
	switch {
	case !a.Required:
		return ""
	case a.TeamName == "":
		return "teamName is required with required: true (the hostname of an Access application, where the edge serves its keys)"
	case !strings.Contains(a.TeamName, ".") && !strings.Contains(a.TeamName, "://") && !strings.HasPrefix(a.TeamName, "localhost"):
		return fmt.Sprintf("teamName %q: want the hostname of an Access application (app.example.com) or its https:// URL: adit serves the keys there, it has no team domains", a.TeamName)
	case len(a.AUDTag) == 0:
		return "audTag is required with required: true (the application's audience tag, from `adit access app info`)"
	}
	return ""
}

// FromURL builds the single catch-all rule that cloudflared's --url means, with the
// default originRequest options. A bare host:port is taken as http://host:port.
func FromURL(rawURL string) (*Ingress, error) {
	in, err := New(&Config{Ingress: []RuleConfig{{Service: withScheme(rawURL)}}})
	if err != nil {
		// "ingress: rule 1: service ..." reads oddly for a single URL.
		return nil, fmt.Errorf("ingress: url: %s", strings.TrimPrefix(err.Error(), "ingress: rule 1: "))
	}
	return in, nil
}

// withScheme adds http:// to a bare host:port, as cloudflared does for --url.
func withScheme(s string) string {
	if s == "" || strings.Contains(s, "://") || strings.HasPrefix(s, "unix") || strings.HasPrefix(s, "http_status:") {
		return s
	}
	if _, err := parseService(s); err == nil {
		return s
	}
	return "http://" + s
}

func compile(rc *RuleConfig, i int, global OriginRequest) (Rule, error) {
	r := Rule{Index: i, Hostname: rc.Hostname}
	var err error
	if r.Service, err = parseService(rc.Service); err != nil {
		if rc.Service == "" {
			return r, errors.New("service is required")
		}
		return r, fmt.Errorf("service %q: %w", rc.Service, err)
	}
	if err := r.setHostname(rc.Hostname); err != nil {
		return r, fmt.Errorf("hostname %q: %w", rc.Hostname, err)
	}
	if rc.Path != "" {
		if r.Path, err = regexp.Compile(rc.Path); err != nil {
			return r, fmt.Errorf("path: %w", err)
		}
	}
	r.Origin = rc.OriginRequest.Apply(global).WithDefaults()
	if why := r.Origin.Access.check(); why != "" {
		return r, errors.New("originRequest: access: " + why)
	}
	if what := r.picksDestination(); what != "" && len(r.Origin.IPRules) == 0 {
		return r, fmt.Errorf("%s needs ipRules: without them anyone who knows the hostname reaches every address the connector can; "+
			"list the destinations to allow under originRequest ipRules (an explicit {prefix: 0.0.0.0/0, allow: true} allows all IPv4)", what)
	}
	return r, nil
}

// picksDestination names what lets the client of r choose the address the
// connector dials (a bastion or a SOCKS proxy, as the connector serves them),
// or returns "" when the rule's origin is fixed.
func (r *Rule) picksDestination() string {
	switch k := r.Service.Kind; {
	case k == KindBastion, k == KindSocksProxy:
		return string(k)
	case r.Origin.BastionMode:
		return "bastionMode"
	case r.Origin.ProxyType == "socks" && (k == KindTCP || k == KindSSH || k == KindRDP || k == KindSMB):
		return "proxyType socks"
	}
	return ""
}

// setHostname validates h and fills r's matching fields.
func (r *Rule) setHostname(h string) error {
	if h == "" || h == "*" {
		r.anyHost = true
		return nil
	}
	if strings.Contains(h, ":") {
		if _, _, err := net.SplitHostPort(h); err == nil {
			return errors.New("must not contain a port; the rule matches any port")
		}
		return errors.New("is not a hostname")
	}
	name := h
	if strings.HasPrefix(h, "*.") {
		r.wildcard = true
		name = h[2:]
	}
	if strings.Contains(name, "*") {
		return errors.New(`a wildcard must be the whole first label, like "*.example.com"`)
	}
	if strings.HasSuffix(name, ".") {
		return errors.New("must not end with a dot")
	}
	ascii := strings.ToLower(name)
	if !isASCII(name) {
		if !utf8.ValidString(name) {
			return errors.New("is not valid UTF-8")
		}
		a, err := idna.Lookup.ToASCII(name)
		if err != nil {
			return fmt.Errorf("is not a valid international hostname: %w", err)
		}
		ascii = strings.ToLower(a)
		r.uhost = name // as written; Match folds case

	}
	if why := checkLabels(ascii); why != "" {
		return errors.New(why)
	}
	if r.uhost == "" && strings.Contains(ascii, "xn--") {
		// Written in punycode: match the Unicode form too.
		if u, err := idna.Lookup.ToUnicode(ascii); err == nil && u != ascii {
			r.uhost = u
		}
	}
	r.host = ascii
	if r.wildcard {
		r.host = "." + r.host
		if r.uhost != "" {
			r.uhost = "." + r.uhost
		}
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// checkLabels checks a lowercase ASCII hostname: dot-separated labels of letters,
// digits, '-' and '_', 1 to 63 long, not starting or ending with '-'; 253 at most.
func checkLabels(h string) string {
	if len(h) > 253 {
		return "is longer than 253 characters"
	}
	for label := range strings.SplitSeq(h, ".") {
		switch {
		case label == "":
			return "has an empty label (two dots in a row, or a leading dot)"
		case len(label) > 63:
			return fmt.Sprintf("label %q is longer than 63 characters", label)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Sprintf("label %q must not start or end with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Sprintf("has %q, which hostnames may not contain", rune(c))
			}
		}
	}
	return ""
}

// Match returns the first rule whose hostname and path match, and its index. host
// may carry a port and is matched case-insensitively; path is the URL path. Since the
// last rule matches everything, Match always finds one for an Ingress made by [New]
// (for the zero Ingress it returns -1, nil). It does not allocate.
func (in *Ingress) Match(host, path string) (int, *Rule) {
	host = stripPort(host)
	for i := range in.Rules {
		r := &in.Rules[i]
		if r.matchHost(host) && (r.Path == nil || r.Path.MatchString(path)) {
			return i, r
		}
	}
	return -1, nil
}

func (r *Rule) matchHost(host string) bool {
	if r.anyHost {
		return true
	}
	if !r.wildcard {
		return strings.EqualFold(host, r.host) || (r.uhost != "" && strings.EqualFold(host, r.uhost))
	}
	return hasSuffixFold(host, r.host) || (r.uhost != "" && hasSuffixFold(host, r.uhost))
}

// hasSuffixFold reports whether s ends with suffix, ignoring case, with at least one
// byte before it (so "*.example.com" does not match ".example.com").
func hasSuffixFold(s, suffix string) bool {
	return len(s) > len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}

// stripPort removes a ":port" and a trailing dot from a Host header value, and the
// brackets of an IPv6 literal.
func stripPort(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		if strings.HasPrefix(host, "[") {
			if j := strings.IndexByte(host, ']'); j > 0 {
				host = host[1:j]
			}
		} else if strings.IndexByte(host, ':') == i {
			host = host[:i]
		}
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	return strings.TrimSuffix(host, ".")
}
