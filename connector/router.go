package connector

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/adit-dev/adit/access/accessverify"
	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/origin"
)

// router is one generation of ingress rules with their origins. The
// connector swaps a whole router atomically (see Connector.SetIngress), so a
// request uses one consistent generation from start to end.
type router struct {
	ing *ingress.Ingress
	// http holds the origin of each HTTP rule, by rule position; nil for
	// rules that are not HTTP services (tcp, ssh, ...).
	http []origin.HTTPService
	// access holds the Access verifier of each rule that requires one
	// (access.go); stopAccess ends their key fetches.
	access     []*accessverify.Verifier
	stopAccess func()
}

// newRouter builds the origins for ing's rules.
func newRouter(ing *ingress.Ingress, log *slog.Logger, accessClient *http.Client) (*router, error) {
	r := &router{ing: ing, http: make([]origin.HTTPService, len(ing.Rules))}
	var err error
	if r.access, r.stopAccess, err = accessVerifiers(ing, accessClient); err != nil {
		return nil, err
	}
	for i := range ing.Rules {
		rule := &ing.Rules[i]
		if !rule.Service.Kind.IsHTTP() {
			continue
		}
		svc, err := origin.NewHTTP(rule, log)
		if err != nil {
			r.close()
			return nil, fmt.Errorf("connector: ingress rule %d: %w", i+1, err)
		}
		r.http[i] = svc
	}
	return r, nil
}

// match returns the rule for a request and, for HTTP rules, its origin.
func (r *router) match(host, path string) (*ingress.Rule, origin.HTTPService) {
	i, rule := r.ing.Match(host, path)
	if rule == nil {
		return nil, nil
	}
	return rule, r.http[i]
}

// close releases the origins (idle connections, the hello_world server).
func (r *router) close() {
	if r.stopAccess != nil {
		r.stopAccess()
	}
	for _, s := range r.http {
		if s != nil {
			s.Close()
		}
	}
}
