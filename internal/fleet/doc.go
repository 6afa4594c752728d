// Package fleet is how edges form one network on their embedded etcd
// servers: join tokens (made on a running edge, stored hashed, revocable,
// pinning that edge's CA as kubeadm's discovery-token-ca-cert-hash does)
// and the joining edge's side of POST /v1/fleet/join.
//
// A join token reads
//
//	aditjoin.<sha256 of the fleet CA's SubjectPublicKeyInfo, 64 hex>.<id, 16 hex>.<secret, 43 base64url>
//
// The joining edge trusts the API it joins through only if that API's
// certificate chains to a CA with the pinned key hash, so the token's
// secret goes to no one else; the API then checks the secret against the
// sha256 it keeps under /adit/join-tokens/<id>.
package fleet
