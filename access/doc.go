// Package access is adit's Access: who may reach a routed hostname. It is
// one of the edge's request layers (package edge/layer), the last before
// the proxy, built by New from the edge's etcd client, logger and metrics.
//
// Its records live in etcd under store.AccessPrefix and are watched into
// memory (state.go), so a request never waits on etcd and a change made
// through the API applies on every edge within a second:
//
//   - identity providers: any OpenID Connect provider, found by discovery;
//     logins use the authorization code flow with PKCE, and the state and
//     nonce are checked (oidc.go);
//   - applications: a hostname and an optional path; the most specific
//     one for a request wins (state.go, match);
//   - policies, per application and in order, with Cloudflare Access's
//     meaning (policy.go);
//   - service tokens for machines, stored as the sha256 of their secret;
//   - the edges' signing keys, ECDSA P-256, rotated (keys.go) and served
//     as a JWKS at /.adit/certs and /cdn-cgi/access/certs.
//
// A person who logs in gets a session cookie (HttpOnly, Secure,
// SameSite=Lax) holding a JWT the edge signed for that application; the
// same JWT goes to the origin as Adit-Access-Jwt-Assertion and
// Cf-Access-Jwt-Assertion, which the origin (or the connector, for
// originRequest.access, package access/accessverify) checks against the
// JWKS. Client-sent copies of those headers never pass the edge.
//
// The edge endpoints, answered on every hostname that has an application,
// are in layer.go; the administration API (/v1/access/...) in api.go.
package access
