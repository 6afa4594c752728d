package control

import (
	"context"
	"net/http"
	"strconv"
)

// RouteTCP implements API.
func (c *Client) RouteTCP(ctx context.Context, tunnelID string, port int, hostname string, overwrite bool) (TCPRoute, error) {
	if err := ValidatePort(port); err != nil {
		return TCPRoute{}, err
	}
	var r TCPRoute
	err := c.do(ctx, http.MethodPut, "/v1/tcp-routes/"+strconv.Itoa(port), nil,
		TCPRouteRequest{TunnelID: tunnelID, Hostname: hostname, Overwrite: overwrite}, &r)
	return r, err
}

// ListTCPRoutes implements API.
func (c *Client) ListTCPRoutes(ctx context.Context) ([]TCPRoute, error) {
	var rs []TCPRoute
	err := c.do(ctx, http.MethodGet, "/v1/tcp-routes", nil, nil, &rs)
	return rs, err
}

// DeleteTCPRoute implements API.
func (c *Client) DeleteTCPRoute(ctx context.Context, port int) error {
	if err := ValidatePort(port); err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, "/v1/tcp-routes/"+strconv.Itoa(port), nil, nil, nil)
}
