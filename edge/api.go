package edge

import (
	"bytes"
	"context"
	"net/http"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/internal/store"
)

// readYourWrites wraps the control API so that a change made through it is
// in this edge's in-memory state before the answer goes out: a route created
// by `adit tunnel route dns` serves the very next public request.
func readYourWrites(h http.Handler, cli *clientv3.Client, state *controlserver.State) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			h.ServeHTTP(w, r)
			return
		}
		rec := &recorder{header: w.Header(), status: http.StatusOK}
		h.ServeHTTP(rec, r)
		if rec.status < 300 {
			waitForState(r.Context(), cli, state)
		}
		w.WriteHeader(rec.status)
		w.Write(rec.body.Bytes())
	})
}

// waitForState waits, briefly, until state has caught up with etcd's
// current revision. It learns the revision from a read of one key (the
// header of any read carries the store's revision), so its cost does not grow
// with the number of tunnels and routes.
func waitForState(ctx context.Context, cli *clientv3.Client, state *controlserver.State) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, store.Prefix, clientv3.WithKeysOnly())
	if err != nil {
		return
	}
	state.WaitRevision(ctx, resp.Header.Revision)
}

// recorder holds a small API response until the state has caught up.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(p []byte) (int, error) {
	r.wrote = true
	return r.body.Write(p)
}
func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status = code
		r.wrote = true
	}
}

// Sync waits (up to 2s) until the edge's in-memory routes and tunnels
// reflect every change already written to etcd, e.g. by Service.
func (s *Server) Sync(ctx context.Context) {
	waitForState(ctx, s.store.Client(), s.state)
}
