package controlserver

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
)

// DrainEdge implements control.API: it asks the live edge named name to
// drain, by a key (store.EdgeDrainKey) that edge watches; the edge then
// drains and exits (package edge, drain.go). ErrNotFound if no live edge
// has that name. It returns the edge's record as it stands.
func (s *Service) DrainEdge(ctx context.Context, name string) (control.EdgeNode, error) {
	edges, err := s.ListEdges(ctx)
	if err != nil {
		return control.EdgeNode{}, err
	}
	for _, e := range edges {
		if e.Name != name {
			continue
		}
		if _, err := s.cli.Put(ctx, store.EdgeDrainKey(name), time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
			return control.EdgeNode{}, etcdError("drain edge", err)
		}
		return e, nil
	}
	return control.EdgeNode{}, fmt.Errorf("%w: no live edge named %q (adit edge list)", control.ErrNotFound, name)
}

func (h *apiHandler) drainEdge(w http.ResponseWriter, r *http.Request) error {
	e, err := h.svc.DrainEdge(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, e)
	return nil
}
