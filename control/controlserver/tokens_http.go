package controlserver

import (
	"net/http"

	"github.com/adit-dev/adit/control"
)

// The API token endpoints: list, rotate, revoke (docs/openapi.yaml).

func (h *apiHandler) listTokens(w http.ResponseWriter, r *http.Request) error {
	all, err := boolParam(r, "include_revoked")
	if err != nil {
		return err
	}
	tokens, err := h.svc.ListTokens(r.Context(), all)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokens)
	return nil
}

func (h *apiHandler) rotateToken(w http.ResponseWriter, r *http.Request) error {
	var req control.RotateTokenRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	resp, err := h.svc.RotateToken(r.Context(), req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, resp)
	return nil
}

func (h *apiHandler) revokeToken(w http.ResponseWriter, r *http.Request) error {
	if err := h.svc.RevokeToken(r.Context(), r.PathValue("id"), callerTokenID(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
