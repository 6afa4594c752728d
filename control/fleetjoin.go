package control

import (
	"context"
	"net/http"
	"time"
)

// The fleet's own etcd cluster (issue 15): edges whose embedded etcd
// servers are members of one cluster, as k3s runs its servers. An admin
// makes a join token on a running edge; a new edge presents it to that
// edge's API (POST /v1/fleet/join) and becomes a member.

// EdgeMember is one member of the fleet's embedded etcd cluster.
type EdgeMember struct {
	ID       string   `json:"id"`        // etcd's member ID, hex
	Name     string   `json:"name"`      // the edge's node name; empty until the member has started
	PeerURLs []string `json:"peer_urls"` // where members reach its etcd peer listener
	Learner  bool     `json:"learner"`   // catching up; not yet a voting member
}

// JoinToken describes a join token. The token itself is shown once, when
// it is made; only its secret's sha256 is stored.
type JoinToken struct {
	ID          string     `json:"id"`
	Description string     `json:"description,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"` // nil: until revoked
}

// CreateJoinTokenRequest is the body of POST /v1/fleet/join-tokens.
type CreateJoinTokenRequest struct {
	Description string  `json:"description,omitempty"` // at most 200 printable characters
	TTL         Seconds `json:"ttl"`                   // how long it works; 0: until revoked
}

// CreateJoinTokenResponse is the made token, the only time it is shown.
type CreateJoinTokenResponse struct {
	JoinToken
	Token string `json:"token"`
}

// JoinRequest is the body of POST /v1/fleet/join, authenticated by a join
// token ("Authorization: Bearer <join token>").
type JoinRequest struct {
	Name    string `json:"name"`     // the joining edge's node name: its member name
	PeerURL string `json:"peer_url"` // https://host:port of its etcd peer listener
	Version string `json:"version"`  // the adit version it runs
}

// JoinResponse is what a joining edge needs to start its etcd member.
type JoinResponse struct {
	// InitialCluster is every member's name=peerURL, the new one's
	// included, comma-separated (etcd's --initial-cluster).
	InitialCluster string `json:"initial_cluster"`
	// CACertPEM and CAKeyPEM are the fleet's CA: every edge issues its
	// certificates (API, tunnels, etcd peers) from it.
	CACertPEM string `json:"ca_cert_pem"`
	CAKeyPEM  string `json:"ca_key_pem"`
}

// ListEdgeMembers lists the members of the fleet's etcd cluster.
func (c *Client) ListEdgeMembers(ctx context.Context) ([]EdgeMember, error) {
	var ms []EdgeMember
	err := c.do(ctx, http.MethodGet, "/v1/fleet/members", nil, nil, &ms)
	return ms, err
}

// RemoveEdgeMember removes the member of that name from the fleet's etcd
// cluster: the edge answering it, which then stops, or a dead one.
func (c *Client) RemoveEdgeMember(ctx context.Context, name string) error {
	seg, err := pathSegment("member name", name)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, "/v1/fleet/members/"+seg, nil, nil, nil)
}

// CreateJoinToken makes a join token.
func (c *Client) CreateJoinToken(ctx context.Context, req CreateJoinTokenRequest) (CreateJoinTokenResponse, error) {
	var resp CreateJoinTokenResponse
	err := c.do(ctx, http.MethodPost, "/v1/fleet/join-tokens", nil, req, &resp)
	return resp, err
}

// ListJoinTokens lists the join tokens that work.
func (c *Client) ListJoinTokens(ctx context.Context) ([]JoinToken, error) {
	var ts []JoinToken
	err := c.do(ctx, http.MethodGet, "/v1/fleet/join-tokens", nil, nil, &ts)
	return ts, err
}

// RevokeJoinToken revokes a join token by ID.
func (c *Client) RevokeJoinToken(ctx context.Context, id string) error {
	seg, err := pathSegment("join token ID", id)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, "/v1/fleet/join-tokens/"+seg, nil, nil, nil)
}
