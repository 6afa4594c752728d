package control

import "errors"

// The JSON bodies of the /v1 API (docs/openapi.yaml), shared by [Client]
// and the server's handler (package controlserver).

// ErrorBody is the JSON body of every API error answer.
type ErrorBody struct {
	Error string `json:"error"` // a message a person can act on, without the "control: " prefix
	Code  string `json:"code"`  // "not_found", "conflict", "tunnel_connected", "unauthorized", "invalid" or "internal"
}

// CreateTunnelRequest is the body of POST /v1/tunnels.
type CreateTunnelRequest struct {
	Name         string `json:"name"`
	TunnelSecret []byte `json:"tunnel_secret"` // base64 (standard encoding)
}

// RouteRequest is the body of PUT /v1/routes/{hostname}.
type RouteRequest struct {
	TunnelID  string `json:"tunnel_id"`
	Overwrite bool   `json:"overwrite"`
}

// TCPRouteRequest is the body of PUT /v1/tcp-routes/{port}.
type TCPRouteRequest struct {
	TunnelID  string `json:"tunnel_id"`
	Hostname  string `json:"hostname,omitempty"` // empty: the connector's catch-all rule
	Overwrite bool   `json:"overwrite"`
}

// ErrorCode returns the API error code and HTTP status for err's kind, one
// of the sentinel errors (ErrNotFound, ...); ok is false for any other
// error, which the API reports as an internal error.
func ErrorCode(err error) (code string, status int, ok bool) {
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.code, c.status, true
		}
	}
	return "", 0, false
}
