package control

import (
	"context"
	"net/http"
	"strconv"
)

// tcpRouteRequest is the body of PUT /v1/tcp-routes/{port}.
type tcpRouteRequest struct {
	TunnelID  string `json:"tunnel_id"`
	Hostname  string `json:"hostname,omitempty"`
	Overwrite bool   `json:"overwrite"`
}

// portParam parses the {port} path segment.
func portParam(r *http.Request) (int, error) {
	s := r.PathValue("port")
	port, err := strconv.Atoi(s)
	if err != nil || strconv.Itoa(port) != s {
		return 0, &httpError{Status: http.StatusBadRequest, Code: "invalid", Msg: "port " + strconv.Quote(s) + " is not a number from 1 to 65535"}
	}
	return port, ValidatePort(port)
}

func (h *apiHandler) listTCPRoutes(w http.ResponseWriter, r *http.Request) error {
	routes, err := h.svc.ListTCPRoutes(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, routes)
	return nil
}

func (h *apiHandler) routeTCP(w http.ResponseWriter, r *http.Request) error {
	port, err := portParam(r)
	if err != nil {
		return err
	}
	var req tcpRouteRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	route, err := h.svc.RouteTCP(r.Context(), req.TunnelID, port, req.Hostname, req.Overwrite)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, route)
	return nil
}

func (h *apiHandler) deleteTCPRoute(w http.ResponseWriter, r *http.Request) error {
	port, err := portParam(r)
	if err != nil {
		return err
	}
	if err := h.svc.DeleteTCPRoute(r.Context(), port); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// RouteTCP implements API.
func (c *Client) RouteTCP(ctx context.Context, tunnelID string, port int, hostname string, overwrite bool) (TCPRoute, error) {
	if err := ValidatePort(port); err != nil {
		return TCPRoute{}, err
	}
	var r TCPRoute
	err := c.do(ctx, http.MethodPut, "/v1/tcp-routes/"+strconv.Itoa(port), nil,
		tcpRouteRequest{TunnelID: tunnelID, Hostname: hostname, Overwrite: overwrite}, &r)
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
