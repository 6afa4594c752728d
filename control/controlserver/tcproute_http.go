package controlserver

import (
	"net/http"
	"strconv"

	"github.com/adit-dev/adit/control"
)

// portParam parses the {port} path segment.
func portParam(r *http.Request) (int, error) {
	s := r.PathValue("port")
	port, err := strconv.Atoi(s)
	if err != nil || strconv.Itoa(port) != s {
		return 0, &httpError{Status: http.StatusBadRequest, Code: "invalid", Msg: "port " + strconv.Quote(s) + " is not a number from 1 to 65535"}
	}
	return port, control.ValidatePort(port)
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
	var req control.TCPRouteRequest
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
