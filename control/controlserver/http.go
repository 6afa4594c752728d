package controlserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/logs"
)

// maxBodyBytes bounds API request bodies.
const maxBodyBytes = 64 << 10

// httpError is what an API handler fails with. Status, Code and Msg are sent
// to the caller; Err, if set, is only logged.
type httpError struct {
	Status int
	Code   string
	Msg    string
	Err    error
}

func (e *httpError) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

// asHTTPError turns any error into an httpError: sentinel kinds get their code
// and status and keep their message; anything else is an internal error whose
// details stay in the log.
func asHTTPError(err error) *httpError {
	var he *httpError
	if errors.As(err, &he) {
		return he
	}
	if code, status, ok := control.ErrorCode(err); ok {
		return &httpError{Status: status, Code: code, Msg: strings.TrimPrefix(err.Error(), "control: ")}
	}
	return &httpError{Status: http.StatusInternalServerError, Code: "internal", Msg: "internal error; the edge's log has the details", Err: err}
}

type apiHandler struct {
	svc *Service
	log *slog.Logger
	mux *http.ServeMux
}

// NewHandler returns the /v1 JSON API over svc. Every request needs an
// "Authorization: Bearer <token>" header with a token svc.CheckToken accepts,
// or the dashboard's session cookie with CSRFHeader (sessions.go).
// docs/openapi.yaml describes the API. The extra endpoints are served beside
// the API's own, behind the same check. A nil logger discards.
func NewHandler(svc *Service, logger *slog.Logger, extra ...Endpoint) http.Handler {
	logger = logs.Component(logger, "control")
	h := &apiHandler{svc: svc, log: logger, mux: http.NewServeMux()}
	for _, r := range h.routes() {
		h.handle(r.pattern, r.fn)
	}
	for _, e := range extra {
		h.handle(e.Pattern, e.Handle)
	}
	h.handle("/v1/", func(w http.ResponseWriter, r *http.Request) error {
		return &httpError{Status: http.StatusNotFound, Code: "not_found", Msg: "no such API endpoint: " + r.Method + " " + r.URL.Path}
	})
	return h
}

// apiRoute is one endpoint: a ServeMux pattern and its handler.
type apiRoute struct {
	pattern string
	fn      func(http.ResponseWriter, *http.Request) error
}

// routes lists the API's endpoints; docs/openapi.yaml describes each of them.
func (h *apiHandler) routes() []apiRoute {
	return []apiRoute{
		{"GET /v1/tunnels", h.listTunnels},
		{"POST /v1/tunnels", h.createTunnel},
		{"GET /v1/tunnels/{id}", h.getTunnel},
		{"DELETE /v1/tunnels/{id}", h.deleteTunnel},
		{"DELETE /v1/tunnels/{id}/connections", h.cleanupTunnel},
		{"PUT /v1/tunnels/{id}/configurations", h.setTunnelConfig},                // tunnelconfig_http.go
		{"GET /v1/tunnels/{id}/configurations", h.getTunnelConfig},                //
		{"GET /v1/tunnels/{id}/configurations/history", h.tunnelConfigHistory},    //
		{"POST /v1/tunnels/{id}/configurations/rollback", h.rollbackTunnelConfig}, //
		{"POST /v1/tunnels/{id}/published", h.publish},                            //
		{"DELETE /v1/tunnels/{id}/published/{hostname}", h.unpublish},             //
		{"GET /v1/routes", h.listRoutes},
		{"PUT /v1/routes/{hostname}", h.routeDNS},
		{"DELETE /v1/routes/{hostname}", h.deleteRoute},
		{"GET /v1/tcp-routes", h.listTCPRoutes},
		{"PUT /v1/tcp-routes/{port}", h.routeTCP},
		{"DELETE /v1/tcp-routes/{port}", h.deleteTCPRoute},
		{"GET /v1/edge", h.edgeInfo},
		{"GET /v1/edges", h.listEdges},               // fleet_http.go
		{"POST /v1/edges/{name}/drain", h.drainEdge}, // drain.go
		{"GET /v1/tokens", h.listTokens},             // tokens_http.go
		{"POST /v1/tokens/rotate", h.rotateToken},    //
		{"DELETE /v1/tokens/{id}", h.revokeToken},    //
	}
}

func (h *apiHandler) handle(pattern string, f func(http.ResponseWriter, *http.Request) error) {
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			h.writeError(w, r, err)
		}
	})
}

func (h *apiHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, err := h.authenticate(r) // sessions.go: a bearer token, or the dashboard's session cookie
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="adit"`)
		h.writeError(w, r, err)
		return
	}
	h.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, id)))
}

// bearerToken returns the token of an "Authorization: Bearer <token>" header, or "".
func bearerToken(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

func (h *apiHandler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	he := asHTTPError(err)
	if he.Err != nil && !errors.Is(he.Err, context.Canceled) {
		h.log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", he.Err)
	}
	writeJSON(w, he.Status, control.ErrorBody{Error: he.Msg, Code: he.Code})
}

// writeJSON sends v. An error writing it means the caller went away: there is
// nobody to tell.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// decodeBody reads one JSON value of at most maxBodyBytes into v.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more data after the JSON object")
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return &httpError{Status: http.StatusRequestEntityTooLarge, Code: "invalid", Msg: fmt.Sprintf("request body is larger than %d bytes", maxBodyBytes)}
	case err != nil:
		return &httpError{Status: http.StatusBadRequest, Code: "invalid", Msg: "request body: " + err.Error()}
	}
	return nil
}

// boolParam parses an optional boolean query parameter.
func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, &httpError{Status: http.StatusBadRequest, Code: "invalid", Msg: fmt.Sprintf("query parameter %s=%q is not true or false", name, v)}
	}
	return b, nil
}

func (h *apiHandler) listTunnels(w http.ResponseWriter, r *http.Request) error {
	all, err := boolParam(r, "include_deleted")
	if err != nil {
		return err
	}
	tunnels, err := h.svc.ListTunnels(r.Context(), control.ListOptions{Name: r.URL.Query().Get("name"), IncludeDeleted: all})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tunnels)
	return nil
}

func (h *apiHandler) createTunnel(w http.ResponseWriter, r *http.Request) error {
	var req control.CreateTunnelRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	t, err := h.svc.CreateTunnel(r.Context(), req.Name, req.TunnelSecret)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/tunnels/"+t.ID)
	writeJSON(w, http.StatusCreated, t)
	return nil
}

func (h *apiHandler) getTunnel(w http.ResponseWriter, r *http.Request) error {
	t, err := h.svc.GetTunnel(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

func (h *apiHandler) deleteTunnel(w http.ResponseWriter, r *http.Request) error {
	force, err := boolParam(r, "force")
	if err != nil {
		return err
	}
	if err := h.svc.DeleteTunnel(r.Context(), r.PathValue("id"), force); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *apiHandler) cleanupTunnel(w http.ResponseWriter, r *http.Request) error {
	if err := h.svc.CleanupTunnel(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *apiHandler) listRoutes(w http.ResponseWriter, r *http.Request) error {
	routes, err := h.svc.ListRoutes(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, routes)
	return nil
}

func (h *apiHandler) routeDNS(w http.ResponseWriter, r *http.Request) error {
	var req control.RouteRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	route, err := h.svc.RouteDNS(r.Context(), req.TunnelID, r.PathValue("hostname"), req.Overwrite)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, route)
	return nil
}

func (h *apiHandler) deleteRoute(w http.ResponseWriter, r *http.Request) error {
	if err := h.svc.DeleteRoute(r.Context(), r.PathValue("hostname")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *apiHandler) edgeInfo(w http.ResponseWriter, r *http.Request) error {
	info, err := h.svc.EdgeInfo(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}
