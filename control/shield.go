package control

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The shield's records (issue 12): per-hostname IP rules, rate limits and
// WAF settings. Each names a hostname or AllHosts, the default for every
// hostname; the edges watch them from etcd (package shield).

// AllHosts is the hostname of a rule or setting that applies to every
// hostname: an IP rule checked for all of them (its deny rules at the
// connection), or the WAF setting of a hostname without its own.
const AllHosts = "*"

// ValidateShieldHostname checks the hostname of a shield record and
// returns its canonical form: AllHosts, or a hostname as ValidateHostname
// accepts it (wildcards included: "*.example.com").
func ValidateShieldHostname(hostname string) (string, error) {
	if hostname == AllHosts {
		return AllHosts, nil
	}
	return ValidateHostname(hostname)
}

// IP rule actions.
const (
	IPAllow = "allow"
	IPDeny  = "deny"
)

// IPRule allows or denies the addresses of a CIDR for a hostname. For one
// client address, the matching rule with the longest prefix decides (an
// allow wins a tie); a hostname's own rules come before the AllHosts
// rules; an address no rule matches is allowed. The AllHosts deny rules
// are also applied to each connection before the hostname is known (an
// AllHosts allow with a longer prefix lets an address through there; a
// hostname's allow rule cannot).
type IPRule struct {
	ID       string `json:"id"`
	Hostname string `json:"hostname"` // a hostname or AllHosts
	Action   string `json:"action"`   // IPAllow or IPDeny
	// CIDR is the prefix in its canonical form ("10.0.0.0/8",
	// "2001:db8::/32"); a single address is a /32 or /128.
	CIDR      string    `json:"cidr"`
	Note      string    `json:"note,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// maxNoteLen bounds an IP rule's note.
const maxNoteLen = 256

// Validate checks r and puts its fields in canonical form.
func (r *IPRule) Validate() error {
	h, err := ValidateShieldHostname(r.Hostname)
	if err != nil {
		return err
	}
	r.Hostname = h
	if r.Action != IPAllow && r.Action != IPDeny {
		return Errorf(ErrInvalid, "ip rule action %q: want %q or %q", r.Action, IPAllow, IPDeny)
	}
	p, err := ParseCIDR(r.CIDR)
	if err != nil {
		return err
	}
	r.CIDR = p.String()
	if len(r.Note) > maxNoteLen {
		return Errorf(ErrInvalid, "ip rule note is %d bytes, the limit is %d", len(r.Note), maxNoteLen)
	}
	return nil
}

// ParseCIDR parses an IP rule's cidr: a prefix ("10.0.0.0/8") or one
// address ("192.0.2.7"), IPv4 or IPv6, with its host bits cleared.
func ParseCIDR(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, Errorf(ErrInvalid, "cidr %q is not an address or a prefix such as 10.0.0.0/8", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, Errorf(ErrInvalid, "cidr %q is not an address or a prefix such as 10.0.0.0/8", s)
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, Errorf(ErrInvalid, "cidr %q: an IPv4-mapped prefix shorter than /96", s)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// Rate limit keys and actions.
const (
	ByIP          = "ip"
	ByHeader      = "header:" // followed by the header's name
	ByAccessEmail = "access-email"

	LimitBlock = "block"
	LimitLog   = "log"
)

// RateLimit limits how many requests to a hostname one client may send
// in a period. A client over the limit gets 429 with Retry-After until
// Timeout ends (Action LimitBlock), or is only logged (LimitLog).
// Counters are per edge, over a sliding window.
type RateLimit struct {
	ID       string `json:"id"`
	Hostname string `json:"hostname"` // a hostname or AllHosts
	// Requests is how many requests a client may send per Period: 1 to 1e9.
	Requests int `json:"requests"`
	// Period is the window, in seconds: 1 to 86400.
	Period Seconds `json:"period"`
	// Path, if set, is a regular expression (RE2) a request's path must
	// match for the limit to count it.
	Path string `json:"path,omitempty"`
	// Method, if set, is the one method the limit counts (upper case).
	Method string `json:"method,omitempty"`
	// By is what a client is: ByIP (the default when empty), ByHeader+NAME
	// (the value of a request header; requests without it are not
	// counted) or ByAccessEmail (the email Access let through; requests
	// without one are not counted).
	By string `json:"by"`
	// Action is LimitBlock (the default when empty) or LimitLog.
	Action string `json:"action"`
	// Timeout is how long a client over the limit stays blocked, in
	// seconds: 0 to 86400. If zero, until its window has room again.
	Timeout   Seconds   `json:"timeout,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Seconds is a duration in whole seconds on the wire.
type Seconds int64

// Duration returns s as a time.Duration.
func (s Seconds) Duration() time.Duration { return time.Duration(s) * time.Second }

// maxPeriod bounds a rate limit's period and timeout.
const maxPeriod = 86400

// Validate checks l and fills its defaults.
func (l *RateLimit) Validate() error {
	h, err := ValidateShieldHostname(l.Hostname)
	if err != nil {
		return err
	}
	l.Hostname = h
	if l.Requests < 1 || l.Requests > 1e9 {
		return Errorf(ErrInvalid, "rate limit requests %d: want 1 to 1000000000", l.Requests)
	}
	if l.Period < 1 || l.Period > maxPeriod {
		return Errorf(ErrInvalid, "rate limit period %ds: want 1s to 24h", l.Period)
	}
	if l.Timeout < 0 || l.Timeout > maxPeriod {
		return Errorf(ErrInvalid, "rate limit timeout %ds: want 0 to 24h", l.Timeout)
	}
	if l.Path != "" {
		if err := validateRegexp("rate limit path", l.Path); err != nil {
			return err
		}
	}
	if l.Method != "" {
		m := strings.ToUpper(l.Method)
		if !isToken(m) || len(m) > 32 {
			return Errorf(ErrInvalid, "rate limit method %q is not an HTTP method", l.Method)
		}
		l.Method = m
	}
	switch {
	case l.By == "":
		l.By = ByIP
	case l.By == ByIP, l.By == ByAccessEmail:
	case strings.HasPrefix(l.By, ByHeader):
		name := l.By[len(ByHeader):]
		if name == "" || !isToken(name) || len(name) > 128 {
			return Errorf(ErrInvalid, "rate limit by %q: want header:NAME with a header name", l.By)
		}
	default:
		return Errorf(ErrInvalid, "rate limit by %q: want ip, header:NAME or access-email", l.By)
	}
	switch l.Action {
	case "":
		l.Action = LimitBlock
	case LimitBlock, LimitLog:
	default:
		return Errorf(ErrInvalid, "rate limit action %q: want block or log", l.Action)
	}
	return nil
}

// validateRegexp checks a regular expression a rule is given.
func validateRegexp(field, expr string) error {
	if len(expr) > 1024 {
		return Errorf(ErrInvalid, "%s is %d bytes, the limit is 1024", field, len(expr))
	}
	if _, err := regexp.Compile(expr); err != nil {
		return Errorf(ErrInvalid, "%s %q: %v", field, expr, err)
	}
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110 §5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// WAF modes.
const (
	WAFOff    = "off"
	WAFDetect = "detect"
	WAFBlock  = "block"
)

// What the WAF does with a request body longer than its limit, as
// ModSecurity's SecRequestBodyLimitAction.
const (
	BodyLimitReject  = "reject"  // 413, the request never reaches the tunnel
	BodyLimitPartial = "partial" // the first BodyLimit bytes are inspected, all is forwarded
)

// Defaults of a WAFConfig's zero fields.
const (
	DefaultParanoia          = 1
	DefaultInboundThreshold  = 5
	DefaultOutboundThreshold = 4
	DefaultWAFBodyLimit      = 128 << 10
	DefaultWAFResponseLimit  = 512 << 10
	MaxWAFBodyLimit          = 64 << 20
	maxWAFRules              = 64
	maxWAFRuleText           = 256 << 10
	maxWAFExclusions         = 256
)

// WAFConfig is the WAF's setting for a hostname (or AllHosts, the default
// of every hostname without its own): the OWASP Core Rule Set in Mode,
// with its exclusions and the operator's own rules.
type WAFConfig struct {
	Hostname string `json:"hostname"`
	// Mode is WAFOff, WAFDetect (log and forward) or WAFBlock.
	Mode string `json:"mode"`
	// Paranoia is the CRS's blocking paranoia level, 1 to 4. If zero, 1.
	Paranoia int `json:"paranoia,omitempty"`
	// InboundThreshold and OutboundThreshold are the CRS's anomaly score
	// thresholds: a request's, and in block mode an answer's (the CRS's
	// response rules: data leakages, error pages). If zero, 5 and 4.
	InboundThreshold  int `json:"inbound_threshold,omitempty"`
	OutboundThreshold int `json:"outbound_threshold,omitempty"`
	// BodyLimit is how many bytes of a request body are inspected. If
	// zero, 128 KiB; at most 64 MiB.
	BodyLimit int64 `json:"body_limit,omitempty"`
	// BodyLimitAction is what happens to a longer body: BodyLimitReject
	// (the default when empty) or BodyLimitPartial.
	BodyLimitAction string `json:"body_limit_action,omitempty"`
	// ResponseBodyLimit is how many bytes of an answer's body are
	// inspected (in block and detect mode; which answers, package shield
	// says). If zero, 512 KiB; at most 64 MiB.
	ResponseBodyLimit int64          `json:"response_body_limit,omitempty"`
	Exclusions        []WAFExclusion `json:"exclusions,omitempty"`
	Rules             []WAFRules     `json:"rules,omitempty"`
	UpdatedAt         time.Time      `json:"updated_at"`
}

// WAFExclusion turns one rule off for a hostname, for every path or for
// the paths Path (a regular expression) matches: for false positives.
type WAFExclusion struct {
	ID   string `json:"id"`
	Rule int    `json:"rule"`
	Path string `json:"path,omitempty"`
}

// WAFRules are the operator's own SecLang rules, loaded after the CRS, or
// before it (BeforeCRS) for setup rules such as a SecAction that sets the
// CRS's tx. variables.
type WAFRules struct {
	ID        string `json:"id"`
	Name      string `json:"name,omitempty"` // the file it came from, for people
	Text      string `json:"text"`
	BeforeCRS bool   `json:"before_crs,omitempty"`
}

// WAFSettings are the fields `adit waf set` changes; nil ones keep their
// value.
type WAFSettings struct {
	Mode              *string `json:"mode,omitempty"`
	Paranoia          *int    `json:"paranoia,omitempty"`
	InboundThreshold  *int    `json:"inbound_threshold,omitempty"`
	OutboundThreshold *int    `json:"outbound_threshold,omitempty"`
	BodyLimit         *int64  `json:"body_limit,omitempty"`
	BodyLimitAction   *string `json:"body_limit_action,omitempty"`
	ResponseBodyLimit *int64  `json:"response_body_limit,omitempty"`
}

// Apply sets c's fields from s.
func (s WAFSettings) Apply(c *WAFConfig) {
	if s.Mode != nil {
		c.Mode = *s.Mode
	}
	if s.Paranoia != nil {
		c.Paranoia = *s.Paranoia
	}
	if s.InboundThreshold != nil {
		c.InboundThreshold = *s.InboundThreshold
	}
	if s.OutboundThreshold != nil {
		c.OutboundThreshold = *s.OutboundThreshold
	}
	if s.BodyLimit != nil {
		c.BodyLimit = *s.BodyLimit
	}
	if s.BodyLimitAction != nil {
		c.BodyLimitAction = *s.BodyLimitAction
	}
	if s.ResponseBodyLimit != nil {
		c.ResponseBodyLimit = *s.ResponseBodyLimit
	}
}

// Validate checks c and fills its defaults (not its rules' SecLang, which
// only the WAF can compile).
func (c *WAFConfig) Validate() error {
	h, err := ValidateShieldHostname(c.Hostname)
	if err != nil {
		return err
	}
	c.Hostname = h
	switch c.Mode {
	case WAFOff, WAFDetect, WAFBlock:
	default:
		return Errorf(ErrInvalid, "waf mode %q: want off, detect or block", c.Mode)
	}
	if c.Paranoia == 0 {
		c.Paranoia = DefaultParanoia
	}
	if c.Paranoia < 1 || c.Paranoia > 4 {
		return Errorf(ErrInvalid, "waf paranoia %d: want 1 to 4", c.Paranoia)
	}
	if c.InboundThreshold == 0 {
		c.InboundThreshold = DefaultInboundThreshold
	}
	if c.OutboundThreshold == 0 {
		c.OutboundThreshold = DefaultOutboundThreshold
	}
	if c.InboundThreshold < 1 || c.InboundThreshold > 10000 {
		return Errorf(ErrInvalid, "waf inbound threshold %d: want 1 to 10000", c.InboundThreshold)
	}
	if c.OutboundThreshold < 1 || c.OutboundThreshold > 10000 {
		return Errorf(ErrInvalid, "waf outbound threshold %d: want 1 to 10000", c.OutboundThreshold)
	}
	if c.BodyLimit == 0 {
		c.BodyLimit = DefaultWAFBodyLimit
	}
	if c.BodyLimit < 1 || c.BodyLimit > MaxWAFBodyLimit {
		return Errorf(ErrInvalid, "waf body limit %d: want 1 to %d bytes", c.BodyLimit, MaxWAFBodyLimit)
	}
	if c.ResponseBodyLimit == 0 {
		c.ResponseBodyLimit = DefaultWAFResponseLimit
	}
	if c.ResponseBodyLimit < 1 || c.ResponseBodyLimit > MaxWAFBodyLimit {
		return Errorf(ErrInvalid, "waf response body limit %d: want 1 to %d bytes", c.ResponseBodyLimit, MaxWAFBodyLimit)
	}
	switch c.BodyLimitAction {
	case "":
		c.BodyLimitAction = BodyLimitReject
	case BodyLimitReject, BodyLimitPartial:
	default:
		return Errorf(ErrInvalid, "waf body limit action %q: want reject or partial", c.BodyLimitAction)
	}
	if len(c.Exclusions) > maxWAFExclusions {
		return Errorf(ErrInvalid, "waf: %d exclusions, the limit is %d", len(c.Exclusions), maxWAFExclusions)
	}
	for _, e := range c.Exclusions {
		if err := e.Validate(); err != nil {
			return err
		}
	}
	if len(c.Rules) > maxWAFRules {
		return Errorf(ErrInvalid, "waf: %d rule files, the limit is %d", len(c.Rules), maxWAFRules)
	}
	for _, r := range c.Rules {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks an exclusion.
func (e WAFExclusion) Validate() error {
	if e.Rule < 1 || e.Rule > 99999999 {
		return Errorf(ErrInvalid, "waf exclusion rule %d is not a rule ID", e.Rule)
	}
	if e.Path != "" {
		if err := validateRegexp("waf exclusion path", e.Path); err != nil {
			return err
		}
		if strings.ContainsAny(e.Path, "\"\r\n") {
			return Errorf(ErrInvalid, "waf exclusion path %q: a double quote or a line break is not allowed", e.Path)
		}
	}
	return nil
}

// Validate checks the size of a rule file (its SecLang is compiled by the
// edge that stores it).
func (r WAFRules) Validate() error {
	if strings.TrimSpace(r.Text) == "" {
		return Errorf(ErrInvalid, "waf rules %q are empty", r.Name)
	}
	if len(r.Text) > maxWAFRuleText {
		return Errorf(ErrInvalid, "waf rules %q are %d bytes, the limit is %d", r.Name, len(r.Text), maxWAFRuleText)
	}
	if len(r.Name) > 256 {
		return Errorf(ErrInvalid, "waf rules name is %d bytes, the limit is 256", len(r.Name))
	}
	return nil
}

// ParseRuleID parses a rule ID given on the command line or in a path.
func ParseRuleID(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, Errorf(ErrInvalid, "rule %q is not a rule ID", s)
	}
	return n, nil
}
