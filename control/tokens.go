package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"time"
)

// APIToken describes an API token. The token itself is never stored, only
// its sha256; ID is a prefix of that hash, safe to show and to log.
type APIToken struct {
	ID   string `json:"id"`   // TokenID of the token
	Name string `json:"name"` // "admin" for the edges' admin tokens and their rotations
	// Edge is the edge node that registered the token from its admin.token
	// file; empty for tokens made through the API. An edge that starts with
	// another token in that file revokes the tokens it registered before.
	Edge      string     `json:"edge,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"` // set once revoked; a revoked token never works again
}

// TokenIDLen is the length of a token ID in hex digits.
const TokenIDLen = 16

// TokenID is the ID of an API token: the first 16 hex digits of its sha256.
func TokenID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])[:TokenIDLen]
}

// DefaultTokenName is the name of the admin token an edge creates, and the
// name a rotation replaces if none is given.
const DefaultTokenName = "admin"

// maxTokenNameLen is the longest token name.
const maxTokenNameLen = 64

// ValidateTokenName checks an API token's name: 1-64 characters of
// [A-Za-z0-9._@-].
func ValidateTokenName(name string) error {
	if name == "" {
		return Errorf(ErrInvalid, "token name is empty")
	}
	if len(name) > maxTokenNameLen {
		return Errorf(ErrInvalid, "token name is %d characters, the limit is %d", len(name), maxTokenNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@') {
			return Errorf(ErrInvalid, "token name %q: character %q is not allowed (use letters, digits, '.', '_', '@' and '-')", name, c)
		}
	}
	return nil
}

// RotateTokenRequest is the body of POST /v1/tokens/rotate.
type RotateTokenRequest struct {
	Name string `json:"name,omitempty"` // if empty, DefaultTokenName
}

// RotateTokenResponse is the answer to POST /v1/tokens/rotate: the new
// token, shown this once, and the tokens it replaced, now revoked.
type RotateTokenResponse struct {
	Token   string     `json:"token"`
	Info    APIToken   `json:"info"`
	Revoked []APIToken `json:"revoked"`
}

// ListTokens returns the API tokens, oldest first; revoked ones too if
// includeRevoked.
func (c *Client) ListTokens(ctx context.Context, includeRevoked bool) ([]APIToken, error) {
	var q url.Values
	if includeRevoked {
		q = url.Values{"include_revoked": {"true"}}
	}
	var ts []APIToken
	err := c.do(ctx, http.MethodGet, "/v1/tokens", q, nil, &ts)
	return ts, err
}

// RotateToken makes a new API token named name and revokes, in the same
// transaction, every live token of that name (on every edge at once).
func (c *Client) RotateToken(ctx context.Context, name string) (RotateTokenResponse, error) {
	var resp RotateTokenResponse
	err := c.do(ctx, http.MethodPost, "/v1/tokens/rotate", nil, RotateTokenRequest{Name: name}, &resp)
	return resp, err
}

// RevokeToken revokes the API token with that ID. The token a request is
// made with cannot revoke itself (ErrConflict): rotate it instead.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	seg, err := pathSegment("token ID", id)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, "/v1/tokens/"+seg, nil, nil, nil)
}
