package controlserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/tunnel"
)

// maxConfigBody bounds a configuration request body: a document of
// tunnel.MaxConfigDocument bytes, escaped into JSON.
const maxConfigBody = 2*tunnel.MaxConfigDocument + 4096

func (h *apiHandler) setTunnelConfig(w http.ResponseWriter, r *http.Request) error {
	var req control.TunnelConfigRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxConfigBody))
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &httpError{Status: http.StatusRequestEntityTooLarge, Code: "invalid", Msg: fmt.Sprintf("request body is larger than %d bytes", maxConfigBody)}
		}
		return &httpError{Status: http.StatusBadRequest, Code: "invalid", Msg: "request body: " + err.Error()}
	}
	tc, err := h.svc.SetTunnelConfig(r.Context(), r.PathValue("id"), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tc)
	return nil
}

func (h *apiHandler) getTunnelConfig(w http.ResponseWriter, r *http.Request) error {
	var version int64
	if v := r.URL.Query().Get("version"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return &httpError{Status: http.StatusBadRequest, Code: "invalid", Msg: fmt.Sprintf("query parameter version=%q is not a version (1, 2, ...)", v)}
		}
		version = n
	}
	tc, err := h.svc.GetTunnelConfig(r.Context(), r.PathValue("id"), version)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tc)
	return nil
}

func (h *apiHandler) tunnelConfigHistory(w http.ResponseWriter, r *http.Request) error {
	hist, err := h.svc.TunnelConfigHistory(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, hist)
	return nil
}

func (h *apiHandler) rollbackTunnelConfig(w http.ResponseWriter, r *http.Request) error {
	var req control.RollbackRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	tc, err := h.svc.RollbackTunnelConfig(r.Context(), r.PathValue("id"), req.Version)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tc)
	return nil
}

func (h *apiHandler) publish(w http.ResponseWriter, r *http.Request) error {
	var req control.PublishRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	tc, err := h.svc.Publish(r.Context(), r.PathValue("id"), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tc)
	return nil
}

func (h *apiHandler) unpublish(w http.ResponseWriter, r *http.Request) error {
	tc, err := h.svc.Unpublish(r.Context(), r.PathValue("id"), r.PathValue("hostname"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tc)
	return nil
}
