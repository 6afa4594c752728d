package controlserver

import "net/http"

func (h *apiHandler) listEdges(w http.ResponseWriter, r *http.Request) error {
	edges, err := h.svc.ListEdges(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, edges)
	return nil
}
