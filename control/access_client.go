package control

import (
	"context"
	"net/http"
	"strconv"
)

// The typed client of the Access API (/v1/access/..., served by package
// access on every edge; docs/openapi.yaml).

// AddAccessIdP adds an identity provider.
func (c *Client) AddAccessIdP(ctx context.Context, p AccessIdP) (AccessIdP, error) {
	var out AccessIdP
	err := c.do(ctx, http.MethodPost, "/v1/access/idps", nil, p, &out)
	return out, err
}

// ListAccessIdPs lists the identity providers.
func (c *Client) ListAccessIdPs(ctx context.Context) ([]AccessIdP, error) {
	var out []AccessIdP
	err := c.do(ctx, http.MethodGet, "/v1/access/idps", nil, nil, &out)
	return out, err
}

// DeleteAccessIdP deletes an identity provider.
func (c *Client) DeleteAccessIdP(ctx context.Context, name string) error {
	seg, err := pathSegment("identity provider name", name)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, "/v1/access/idps/"+seg, nil, nil, nil)
}

// CreateAccessApp creates an application (its policies may be given too).
func (c *Client) CreateAccessApp(ctx context.Context, a AccessApp) (AccessApp, error) {
	var out AccessApp
	err := c.do(ctx, http.MethodPost, "/v1/access/apps", nil, a, &out)
	return out, err
}

// ListAccessApps lists the applications.
func (c *Client) ListAccessApps(ctx context.Context) ([]AccessApp, error) {
	var out []AccessApp
	err := c.do(ctx, http.MethodGet, "/v1/access/apps", nil, nil, &out)
	return out, err
}

// GetAccessApp returns one application.
func (c *Client) GetAccessApp(ctx context.Context, name string) (AccessApp, error) {
	seg, err := pathSegment("application name", name)
	if err != nil {
		return AccessApp{}, err
	}
	var out AccessApp
	err = c.do(ctx, http.MethodGet, "/v1/access/apps/"+seg, nil, nil, &out)
	return out, err
}

// DeleteAccessApp deletes an application.
func (c *Client) DeleteAccessApp(ctx context.Context, name string) error {
	seg, err := pathSegment("application name", name)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, "/v1/access/apps/"+seg, nil, nil, nil)
}

// AddAccessPolicy appends a policy to an application's and returns the
// application.
func (c *Client) AddAccessPolicy(ctx context.Context, app string, p AccessPolicy) (AccessApp, error) {
	seg, err := pathSegment("application name", app)
	if err != nil {
		return AccessApp{}, err
	}
	var out AccessApp
	err = c.do(ctx, http.MethodPost, "/v1/access/apps/"+seg+"/policies", nil, p, &out)
	return out, err
}

// DeleteAccessPolicy deletes an application's policy by its position
// (1-based, as `access app info` shows) and returns the application.
func (c *Client) DeleteAccessPolicy(ctx context.Context, app string, n int) (AccessApp, error) {
	seg, err := pathSegment("application name", app)
	if err != nil {
		return AccessApp{}, err
	}
	var out AccessApp
	err = c.do(ctx, http.MethodDelete, "/v1/access/apps/"+seg+"/policies/"+strconv.Itoa(n), nil, nil, &out)
	return out, err
}

// CreateAccessServiceToken creates a service token; the answer holds its
// secret, the only time it is shown.
func (c *Client) CreateAccessServiceToken(ctx context.Context, req CreateServiceTokenRequest) (AccessServiceTokenCreated, error) {
	var out AccessServiceTokenCreated
	err := c.do(ctx, http.MethodPost, "/v1/access/service-tokens", nil, req, &out)
	return out, err
}

// ListAccessServiceTokens lists the service tokens (never their secrets).
func (c *Client) ListAccessServiceTokens(ctx context.Context) ([]AccessServiceToken, error) {
	var out []AccessServiceToken
	err := c.do(ctx, http.MethodGet, "/v1/access/service-tokens", nil, nil, &out)
	return out, err
}

// RevokeAccessServiceToken revokes a service token by name: every edge
// refuses it within a second.
func (c *Client) RevokeAccessServiceToken(ctx context.Context, name string) error {
	seg, err := pathSegment("service token name", name)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, "/v1/access/service-tokens/"+seg, nil, nil, nil)
}

// ListAccessKeys lists the edge's Access signing keys (public facts only).
func (c *Client) ListAccessKeys(ctx context.Context) ([]AccessKey, error) {
	var out []AccessKey
	err := c.do(ctx, http.MethodGet, "/v1/access/keys", nil, nil, &out)
	return out, err
}

// RotateAccessKey adds a new signing key, used for new sessions once every
// edge has seen it; the older keys stay valid for the sessions they signed.
func (c *Client) RotateAccessKey(ctx context.Context) (AccessKey, error) {
	var out AccessKey
	err := c.do(ctx, http.MethodPost, "/v1/access/keys", nil, nil, &out)
	return out, err
}

// RevokeAccessSessions revokes an application's sessions issued until now
// (only email's, if not empty) on every edge.
func (c *Client) RevokeAccessSessions(ctx context.Context, app, email string) (AccessSessionsRevoked, error) {
	seg, err := pathSegment("application name", app)
	if err != nil {
		return AccessSessionsRevoked{}, err
	}
	var out AccessSessionsRevoked
	err = c.do(ctx, http.MethodPost, "/v1/access/apps/"+seg+"/revoke-sessions", nil, RevokeAccessSessionsRequest{Email: email}, &out)
	return out, err
}
