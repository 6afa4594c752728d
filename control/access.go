package control

import (
	"net/netip"
	"path"
	"slices"
	"strings"
	"time"
)

// Access (package access) decides who may reach a hostname: identity
// providers people log in with, applications (a domain and path) with
// ordered policies, and service tokens for machines. These are the records
// the API takes and returns; validation lives here so that the CLI refuses
// bad input before it reaches an edge.

// AccessIdP is an OpenID Connect identity provider.
type AccessIdP struct {
	Name string `json:"name"`
	// Issuer is the provider's issuer URL; its discovery document is at
	// Issuer + "/.well-known/openid-configuration".
	Issuer   string `json:"issuer"`
	ClientID string `json:"client_id"`
	// ClientSecret is only sent when adding a provider; it is never
	// returned (ClientSecretSet says whether there is one).
	ClientSecret    string `json:"client_secret,omitempty"`
	ClientSecretSet bool   `json:"client_secret_set,omitempty"`
	// Scopes asked for. If empty, openid, email and profile.
	Scopes []string `json:"scopes,omitempty"`
	// GroupsClaim is the claim holding the user's groups. If empty, "groups".
	GroupsClaim string    `json:"groups_claim,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// AccessApp is an Access application: requests for Domain (a hostname and
// an optional path) must pass its policies. The most specific application
// for a request wins: an exact hostname before a wildcard, a longer path
// before a shorter one.
type AccessApp struct {
	Name string `json:"name"`
	// Domain is "host" or "host/path"; host may be a wildcard "*.example.com".
	Domain string `json:"domain"`
	// IdP names the identity provider people log in with. If empty, the
	// only one there is.
	IdP string `json:"idp,omitempty"`
	// SessionDuration is how long a login lasts ("24h"). If empty, 24h.
	SessionDuration string `json:"session_duration,omitempty"`
	// AUD is the application's audience tag: the aud claim of the JWTs
	// the edge signs for it (what originRequest.access.audTag names).
	AUD       string         `json:"aud"`
	Policies  []AccessPolicy `json:"policies"`
	CreatedAt time.Time      `json:"created_at"`
}

// RevokeAccessSessionsRequest asks to revoke an application's sessions
// (Cloudflare's "revoke existing tokens"): every session issued until now,
// or only those of Email. The people log in again.
type RevokeAccessSessionsRequest struct {
	// Email limits the revocation to one person's sessions. If empty, all.
	Email string `json:"email,omitempty"`
}

// AccessSessionsRevoked is the answer to RevokeAccessSessionsRequest.
type AccessSessionsRevoked struct {
	App   string `json:"app"`
	Email string `json:"email,omitempty"`
	// IssuedBefore: sessions issued before this time (whole seconds, as
	// JWTs count) are refused on every edge.
	IssuedBefore time.Time `json:"issued_before"`
}

// Policy actions, as Cloudflare Access names them.
const (
	ActionAllow       = "allow"
	ActionDeny        = "deny"
	ActionBypass      = "bypass"
	ActionServiceAuth = "service_auth"
)

// AccessPolicy is one policy of an application. Policies are evaluated as
// in Cloudflare Access: bypass and service_auth policies first, in order,
// then allow and deny policies in order; the first that matches decides,
// and a request no policy matches is denied. A policy matches when one of
// Include, all of Require and none of Exclude match.
type AccessPolicy struct {
	Action  string   `json:"action"`
	Include []string `json:"include"`
	Require []string `json:"require,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
}

// Rule kinds (AccessRule.Kind).
const (
	RuleEmail                 = "email"
	RuleEmailDomain           = "email_domain"
	RuleGroup                 = "group"
	RuleIP                    = "ip"
	RuleServiceToken          = "service_token"
	RuleAnyValidServiceToken  = "any_valid_service_token"
	RuleEveryone              = "everyone"
	maxRulesPerList           = 100
	maxPoliciesPerApp         = 100
	maxAccessValueLen         = 256
	DefaultAccessSession      = 24 * time.Hour
	MaxAccessSession          = 30 * 24 * time.Hour
	DefaultServiceTokenExpiry = 8760 * time.Hour
)

// AccessRule is one parsed rule: "email:ann@example.com",
// "email_domain:example.com", "group:eng", "ip:10.0.0.0/8",
// "service_token:NAME", "any_valid_service_token", "everyone".
type AccessRule struct {
	Kind   string
	Value  string       // lower-case for email and email_domain
	Prefix netip.Prefix // for ip
}

// String is the rule in its canonical text form.
func (r AccessRule) String() string {
	switch r.Kind {
	case RuleAnyValidServiceToken, RuleEveryone:
		return r.Kind
	case RuleIP:
		return r.Kind + ":" + r.Prefix.String()
	}
	return r.Kind + ":" + r.Value
}

// ParseAccessRule parses one rule.
func ParseAccessRule(s string) (AccessRule, error) {
	s = strings.TrimSpace(s)
	kind, value, hasValue := strings.Cut(s, ":")
	switch kind {
	case RuleAnyValidServiceToken, RuleEveryone:
		if hasValue {
			return AccessRule{}, Errorf(ErrInvalid, "rule %q: %s takes no value", s, kind)
		}
		return AccessRule{Kind: kind}, nil
	case RuleEmail, RuleEmailDomain, RuleGroup, RuleIP, RuleServiceToken:
	default:
		return AccessRule{}, Errorf(ErrInvalid, "rule %q: unknown kind %q (want email:, email_domain:, group:, ip:, service_token:, any_valid_service_token or everyone)", s, kind)
	}
	value = strings.TrimSpace(value)
	if value == "" {
		return AccessRule{}, Errorf(ErrInvalid, "rule %q: %s needs a value", s, kind)
	}
	if len(value) > maxAccessValueLen {
		return AccessRule{}, Errorf(ErrInvalid, "rule %q: the value is longer than %d characters", s[:32]+"...", maxAccessValueLen)
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; c < 0x20 || c == 0x7f {
			return AccessRule{}, Errorf(ErrInvalid, "rule %q: control character in the value", s)
		}
	}
	r := AccessRule{Kind: kind, Value: value}
	switch kind {
	case RuleEmail:
		at := strings.LastIndexByte(value, '@')
		if at <= 0 || at == len(value)-1 || strings.ContainsAny(value, " ,") {
			return AccessRule{}, Errorf(ErrInvalid, "rule %q: %q is not an email address", s, value)
		}
		r.Value = strings.ToLower(value)
	case RuleEmailDomain:
		d := strings.TrimPrefix(value, "@")
		h, err := ValidateHostname(d)
		if err != nil || strings.HasPrefix(h, "*") {
			return AccessRule{}, Errorf(ErrInvalid, "rule %q: %q is not a domain", s, value)
		}
		r.Value = h
	case RuleIP:
		p, err := netip.ParsePrefix(value)
		if err != nil {
			a, aerr := netip.ParseAddr(value)
			if aerr != nil {
				return AccessRule{}, Errorf(ErrInvalid, "rule %q: %q is not an IP address or CIDR", s, value)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				// Wider than the mapped IPv4 space: not an IPv4 range.
				return AccessRule{}, Errorf(ErrInvalid, "rule %q: %q is an IPv4-mapped prefix shorter than /96; write the IPv4 or IPv6 range itself", s, value)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		r.Prefix = p.Masked()
		r.Value = r.Prefix.String()
	case RuleServiceToken:
		if err := ValidateAccessName("service token", value); err != nil {
			return AccessRule{}, Errorf(ErrInvalid, "rule %q: %s", s, strings.TrimPrefix(err.Error(), "control: "))
		}
	}
	return r, nil
}

// ValidateAccessName checks the name of an identity provider, application or
// service token: 1 to 64 letters, digits, '.', '_' and '-'.
func ValidateAccessName(what, name string) error {
	if name == "" {
		return Errorf(ErrInvalid, "%s name is empty", what)
	}
	if len(name) > 64 {
		return Errorf(ErrInvalid, "%s name is %d characters, the limit is 64", what, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return Errorf(ErrInvalid, "%s name %q: character %q is not allowed (use letters, digits, '.', '_' and '-')", what, name, c)
		}
	}
	if name == "." || name == ".." {
		return Errorf(ErrInvalid, "%s name %q is not allowed", what, name)
	}
	return nil
}

// ParseAccessDomain checks an application's domain and returns its
// canonical form and its parts: a lower-case hostname (maybe a wildcard)
// and a cleaned path without a trailing slash ("" for the whole host).
func ParseAccessDomain(domain string) (canonical, host, urlPath string, err error) {
	d := strings.TrimPrefix(strings.TrimPrefix(domain, "https://"), "http://")
	host, urlPath, _ = strings.Cut(d, "/")
	host, err = ValidateHostname(host)
	if err != nil {
		return "", "", "", Errorf(ErrInvalid, "domain %q: %s", domain, strings.TrimPrefix(err.Error(), "control: "))
	}
	if urlPath != "" {
		if strings.ContainsAny(urlPath, "?#%\\ ") || len(urlPath) > 1024 {
			return "", "", "", Errorf(ErrInvalid, "domain %q: the path may not hold '?', '#', '%%', '\\' or spaces", domain)
		}
		for seg := range strings.SplitSeq(urlPath, "/") {
			if seg == "." || seg == ".." {
				return "", "", "", Errorf(ErrInvalid, "domain %q: the path may not hold '.' or '..' segments", domain)
			}
		}
		urlPath = strings.TrimSuffix(path.Clean("/"+urlPath), "/")
	}
	return host + urlPath, host, urlPath, nil
}

// ParseSessionDuration parses an application's session duration: "" is
// DefaultAccessSession; otherwise from 1s to MaxAccessSession.
func ParseSessionDuration(s string) (time.Duration, error) {
	if s == "" {
		return DefaultAccessSession, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, Errorf(ErrInvalid, "session duration %q: not a duration like 24h", s)
	}
	if d < time.Second || d > MaxAccessSession {
		return 0, Errorf(ErrInvalid, "session duration %q: want from 1s to %s", s, MaxAccessSession)
	}
	return d, nil
}

// Validate checks a policy and puts its rules in canonical form.
func (p *AccessPolicy) Validate() error {
	switch p.Action {
	case ActionAllow, ActionDeny, ActionBypass, ActionServiceAuth:
	case "":
		return Errorf(ErrInvalid, "policy: action is empty (want allow, deny, bypass or service_auth)")
	default:
		return Errorf(ErrInvalid, "policy: action %q: want allow, deny, bypass or service_auth", p.Action)
	}
	if len(p.Include) == 0 {
		return Errorf(ErrInvalid, "policy: include needs at least one rule")
	}
	for _, list := range []struct {
		name  string
		rules []string
	}{{"include", p.Include}, {"require", p.Require}, {"exclude", p.Exclude}} {
		if len(list.rules) > maxRulesPerList {
			return Errorf(ErrInvalid, "policy: %s has %d rules, the limit is %d", list.name, len(list.rules), maxRulesPerList)
		}
		for i, s := range list.rules {
			r, err := ParseAccessRule(s)
			if err != nil {
				return Errorf(ErrInvalid, "policy: %s: %s", list.name, strings.TrimPrefix(err.Error(), "control: "))
			}
			list.rules[i] = r.String()
		}
	}
	return nil
}

// Validate checks an application as the API receives it, and puts it in
// canonical form. AUD and CreatedAt are the server's to set.
func (a *AccessApp) Validate() error {
	if err := ValidateAccessName("application", a.Name); err != nil {
		return err
	}
	canon, _, _, err := ParseAccessDomain(a.Domain)
	if err != nil {
		return err
	}
	a.Domain = canon
	if a.IdP != "" {
		if err := ValidateAccessName("identity provider", a.IdP); err != nil {
			return err
		}
	}
	if _, err := ParseSessionDuration(a.SessionDuration); err != nil {
		return err
	}
	if len(a.Policies) > maxPoliciesPerApp {
		return Errorf(ErrInvalid, "application %q has %d policies, the limit is %d", a.Name, len(a.Policies), maxPoliciesPerApp)
	}
	for i := range a.Policies {
		if err := a.Policies[i].Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks an identity provider as the API receives it.
func (p *AccessIdP) Validate() error {
	if err := ValidateAccessName("identity provider", p.Name); err != nil {
		return err
	}
	iss := p.Issuer
	switch {
	case iss == "":
		return Errorf(ErrInvalid, "identity provider %q: issuer is empty", p.Name)
	case len(iss) > 1024:
		return Errorf(ErrInvalid, "identity provider %q: issuer is longer than 1024 characters", p.Name)
	case !strings.HasPrefix(iss, "https://") && !strings.HasPrefix(iss, "http://"):
		return Errorf(ErrInvalid, "identity provider %q: issuer %q is not an http(s) URL", p.Name, iss)
	case strings.HasPrefix(iss, "http://") && !isLoopbackURL(iss):
		return Errorf(ErrInvalid, "identity provider %q: issuer %q: plain http is only allowed on loopback", p.Name, iss)
	}
	if p.ClientID == "" || len(p.ClientID) > 1024 {
		return Errorf(ErrInvalid, "identity provider %q: client ID is empty or too long", p.Name)
	}
	if len(p.ClientSecret) > 4096 {
		return Errorf(ErrInvalid, "identity provider %q: client secret is longer than 4096 bytes", p.Name)
	}
	if len(p.Scopes) > 32 {
		return Errorf(ErrInvalid, "identity provider %q: more than 32 scopes", p.Name)
	}
	for _, s := range p.Scopes {
		if s == "" || len(s) > 256 || strings.ContainsAny(s, " \t\r\n") {
			return Errorf(ErrInvalid, "identity provider %q: scope %q is empty, too long or holds spaces", p.Name, s)
		}
	}
	if !slices.Contains(p.Scopes, "openid") && len(p.Scopes) > 0 {
		p.Scopes = append([]string{"openid"}, p.Scopes...)
	}
	if len(p.GroupsClaim) > 256 {
		return Errorf(ErrInvalid, "identity provider %q: groups claim is longer than 256 characters", p.Name)
	}
	return nil
}

// isLoopbackURL reports whether an http URL's host is a loopback address or
// localhost.
func isLoopbackURL(u string) bool {
	rest := u[strings.Index(u, "://")+3:]
	host, _, _ := strings.Cut(rest, "/")
	if h, _, ok := strings.Cut(host, "]"); ok && strings.HasPrefix(h, "[") {
		host = h[1:]
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// AccessServiceToken is a machine's credential: requests carry
// Adit-Access-Client-Id and Adit-Access-Client-Secret (or CF-Access-...).
type AccessServiceToken struct {
	Name      string    `json:"name"`
	ClientID  string    `json:"client_id"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// AccessServiceTokenCreated is the answer to creating a service token: the
// only time its secret is shown (the edge keeps its sha256).
type AccessServiceTokenCreated struct {
	AccessServiceToken
	ClientSecret string `json:"client_secret"`
}

// CreateServiceTokenRequest asks for a service token. Duration is a Go
// duration ("8760h"); if empty, DefaultServiceTokenExpiry.
type CreateServiceTokenRequest struct {
	Name     string `json:"name"`
	Duration string `json:"duration,omitempty"`
}

// ParseServiceTokenDuration parses a service token's lifetime: "" is
// DefaultServiceTokenExpiry; otherwise from 1m to 10 years.
func ParseServiceTokenDuration(s string) (time.Duration, error) {
	if s == "" {
		return DefaultServiceTokenExpiry, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, Errorf(ErrInvalid, "duration %q: not a duration like 8760h", s)
	}
	if d < time.Minute || d > 10*8766*time.Hour {
		return 0, Errorf(ErrInvalid, "duration %q: want from 1m to 87660h", s)
	}
	return d, nil
}

// AccessKey is one of the edge's Access signing keys, public part only.
type AccessKey struct {
	KID        string    `json:"kid"`
	Algorithm  string    `json:"alg"`
	CreatedAt  time.Time `json:"created_at"`
	ActiveFrom time.Time `json:"active_from"`
}
