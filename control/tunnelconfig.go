package control

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// TunnelConfig is one version of a tunnel's remote configuration: what a
// connector started without a config file runs (config.yml's ingress,
// originRequest and warp-routing). GET answers carry Cloudflare's tunnel
// configurations shape (tunnel_id, version, config, source, created_at) plus
// adit's fields.
type TunnelConfig struct {
	TunnelID string `json:"tunnel_id"`
	Version  int64  `json:"version"` // from 1, per tunnel
	// Config is the configuration as JSON, in the shape of Cloudflare's API
	// (the keys of config.yml). Empty in history listings.
	Config json.RawMessage `json:"config,omitempty"`
	// YAML is the configuration as stored: the text given to `ingress set`,
	// comments included. Empty in history listings.
	YAML      string    `json:"yaml,omitempty"`
	Source    string    `json:"source"` // "adit": held by the edge
	Change    string    `json:"change"` // what made it: "set", "publish app.example.com", "rollback to 3", ...
	Rules     int       `json:"rules"`  // how many ingress rules it has
	CreatedAt time.Time `json:"created_at"`
}

// TunnelConfigRequest is the body of PUT /v1/tunnels/{id}/configurations:
// exactly one of Config (Cloudflare's JSON shape, as its API takes it) or
// YAML (a config.yml).
type TunnelConfigRequest struct {
	Config json.RawMessage `json:"config,omitempty"`
	YAML   string          `json:"yaml,omitempty"`
}

// RollbackRequest is the body of POST /v1/tunnels/{id}/configurations/rollback.
type RollbackRequest struct {
	Version int64 `json:"version"`
}

// PublishRequest is the body of POST /v1/tunnels/{id}/published: route
// Hostname to the tunnel and serve it with Service (an ingress service),
// for paths matching Path (a regexp; empty: all).
type PublishRequest struct {
	Hostname string `json:"hostname"`
	Service  string `json:"service"`
	Path     string `json:"path,omitempty"`
}

// MaxConfigHistory is how many versions of a tunnel's configuration are
// kept; older ones are dropped as new ones are stored.
const MaxConfigHistory = 100

// SetTunnelConfig stores a new version of a tunnel's configuration (a
// config.yml in yaml, or Cloudflare's JSON shape in cfJSON). An invalid one
// is refused whole (ErrInvalid) with `tunnel ingress validate`'s message.
func (c *Client) SetTunnelConfig(ctx context.Context, tunnel string, req TunnelConfigRequest) (TunnelConfig, error) {
	var tc TunnelConfig
	err := c.do(ctx, http.MethodPut, "/v1/tunnels/"+url.PathEscape(tunnel)+"/configurations", nil, req, &tc)
	return tc, err
}

// GetTunnelConfig returns a version of a tunnel's configuration; version 0
// means the newest. ErrNotFound if there is none.
func (c *Client) GetTunnelConfig(ctx context.Context, tunnel string, version int64) (TunnelConfig, error) {
	var q url.Values
	if version != 0 {
		q = url.Values{"version": {strconv.FormatInt(version, 10)}}
	}
	var tc TunnelConfig
	err := c.do(ctx, http.MethodGet, "/v1/tunnels/"+url.PathEscape(tunnel)+"/configurations", q, nil, &tc)
	return tc, err
}

// TunnelConfigHistory lists the kept versions of a tunnel's configuration,
// newest first, without their content.
func (c *Client) TunnelConfigHistory(ctx context.Context, tunnel string) ([]TunnelConfig, error) {
	var h []TunnelConfig
	err := c.do(ctx, http.MethodGet, "/v1/tunnels/"+url.PathEscape(tunnel)+"/configurations/history", nil, nil, &h)
	return h, err
}

// RollbackTunnelConfig stores the content of an earlier version as the newest.
func (c *Client) RollbackTunnelConfig(ctx context.Context, tunnel string, version int64) (TunnelConfig, error) {
	var tc TunnelConfig
	err := c.do(ctx, http.MethodPost, "/v1/tunnels/"+url.PathEscape(tunnel)+"/configurations/rollback", nil, RollbackRequest{Version: version}, &tc)
	return tc, err
}

// Publish routes a hostname to the tunnel and adds its rule in front of the
// catch-all, as a new configuration version.
func (c *Client) Publish(ctx context.Context, tunnel string, req PublishRequest) (TunnelConfig, error) {
	var tc TunnelConfig
	err := c.do(ctx, http.MethodPost, "/v1/tunnels/"+url.PathEscape(tunnel)+"/published", nil, req, &tc)
	return tc, err
}

// Unpublish undoes Publish: the hostname's rules go (a new version) and so
// does its route.
func (c *Client) Unpublish(ctx context.Context, tunnel, hostname string) (TunnelConfig, error) {
	var tc TunnelConfig
	err := c.do(ctx, http.MethodDelete, "/v1/tunnels/"+url.PathEscape(tunnel)+"/published/"+url.PathEscape(hostname), nil, nil, &tc)
	return tc, err
}
