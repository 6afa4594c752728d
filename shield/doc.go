// Package shield stops attack traffic at the edge (DESIGN.md, "The edge's
// layers for a public request", steps 1 and 5): per-hostname IP rules,
// rate limits, the WAF (Coraza with the OWASP Core Rule Set) and the flood
// limits (per-address connection and request caps, fair shedding).
//
// Each part is a layer.Layer built from layer.Deps by its constructor
// (NewIPRules, NewRateLimits, NewWAF, NewFlood); IP rules and the flood
// limits are layer.ConnFilters too, for what is decided at the
// connection. The edge lists them in edge/layers.go in this order: flood →
// IP rules → rate limits → WAF → Access → rate limits by Access email.
//
// The records live in etcd (control.IPRule, control.RateLimit,
// control.WAFConfig under store.IPRulesPrefix, RateLimitsPrefix,
// WAFPrefix), written by the API (Endpoints, served behind the admin
// token) and watched by every edge into an immutable index swapped in
// atomically (watch.go): the request path never waits on etcd, and a
// hostname with nothing configured costs one map lookup.
//
// Files: watch.go (etcd → memory), iprules.go, ratelimit.go, waf.go,
// wafresp.go (the response phases: which answers are inspected, and how
// streams keep streaming) and waflog.go (the ModSecurity-shaped match
// log), flood.go, api.go (the /v1 endpoints), metrics.go.
package shield
