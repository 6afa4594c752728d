package access

import (
	"net/netip"
	"strings"

	"github.com/adit-dev/adit/control"
)

// policy is a compiled control.AccessPolicy.
type policy struct {
	action                    string
	include, require, exclude []control.AccessRule
}

func compilePolicy(p control.AccessPolicy) (policy, error) {
	if err := p.Validate(); err != nil {
		return policy{}, err
	}
	cp := policy{action: p.Action}
	for _, l := range []struct {
		in  []string
		out *[]control.AccessRule
	}{{p.Include, &cp.include}, {p.Require, &cp.require}, {p.Exclude, &cp.exclude}} {
		for _, s := range l.in {
			r, err := control.ParseAccessRule(s)
			if err != nil {
				return policy{}, err
			}
			*l.out = append(*l.out, r)
		}
	}
	return cp, nil
}

// subject is what a request shows of who sends it.
type subject struct {
	ip      netip.Addr
	user    *claims       // a valid session for the application, or nil
	service *serviceToken // a valid service token, or nil
}

// ruleMatches reports whether one rule holds for s.
func ruleMatches(r *control.AccessRule, s *subject) bool {
	switch r.Kind {
	case control.RuleEveryone:
		return true
	case control.RuleIP:
		return s.ip.IsValid() && r.Prefix.Contains(s.ip)
	case control.RuleEmail:
		return s.user != nil && strings.EqualFold(s.user.Email, r.Value)
	case control.RuleEmailDomain:
		if s.user == nil {
			return false
		}
		at := strings.LastIndexByte(s.user.Email, '@')
		return at >= 0 && strings.EqualFold(s.user.Email[at+1:], r.Value)
	case control.RuleGroup:
		if s.user == nil {
			return false
		}
		for _, g := range s.user.Groups {
			if g == r.Value {
				return true
			}
		}
		return false
	case control.RuleServiceToken:
		return s.service != nil && s.service.rec.Name == r.Value
	case control.RuleAnyValidServiceToken:
		return s.service != nil
	}
	return false
}

// matches reports whether p holds for s: one of include, all of require,
// none of exclude.
func (p *policy) matches(s *subject) bool {
	any := false
	for i := range p.include {
		if ruleMatches(&p.include[i], s) {
			any = true
			break
		}
	}
	if !any {
		return false
	}
	for i := range p.require {
		if !ruleMatches(&p.require[i], s) {
			return false
		}
	}
	for i := range p.exclude {
		if ruleMatches(&p.exclude[i], s) {
			return false
		}
	}
	return true
}

// Decisions (the metric's decision label).
const (
	decisionAllow       = "allow"
	decisionDeny        = "deny"
	decisionBypass      = "bypass"
	decisionServiceAuth = "service_auth"
	decisionLogin       = "login" // no session: sent to log in (browser) or 401
)

// decisionNames are the decisions, in the order metrics.decision keeps
// their counters.
var decisionNames = [...]string{decisionAllow, decisionDeny, decisionBypass, decisionServiceAuth, decisionLogin}

// decide evaluates an application's policies for s, as Cloudflare Access
// does: bypass and service_auth policies first, in order, then allow and
// deny in order, the first match deciding; no match is a denial. Allow and
// deny policies judge a person, so without a session the answer is
// decisionLogin (unless a service token was shown: then it is a denial).
// It returns the policy's 1-based position too (0 when none matched).
func decide(a *app, s *subject) (string, int) {
	for i := range a.policies {
		p := &a.policies[i]
		switch p.action {
		case control.ActionBypass:
			if p.matches(s) {
				return decisionBypass, i + 1
			}
		case control.ActionServiceAuth:
			// Service auth judges the machine and the network, never a
			// person's session.
			ms := subject{ip: s.ip, service: s.service}
			if p.matches(&ms) {
				return decisionServiceAuth, i + 1
			}
		}
	}
	if s.user == nil {
		if s.service != nil {
			return decisionDeny, 0
		}
		return decisionLogin, 0
	}
	// A person's policies judge the person, not a service token sent beside.
	us := subject{ip: s.ip, user: s.user}
	for i := range a.policies {
		p := &a.policies[i]
		switch p.action {
		case control.ActionAllow:
			if p.matches(&us) {
				return decisionAllow, i + 1
			}
		case control.ActionDeny:
			if p.matches(&us) {
				return decisionDeny, i + 1
			}
		}
	}
	return decisionDeny, 0
}
