package edge

import (
	"fmt"
	"net/http"

	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/dashboard"
)

// The API listener serves the /v1 API and, at every other path, the web
// dashboard (package dashboard), whose sessions the API takes in the admin
// token's stead (control/controlserver/sessions.go). With Config.AdminSSO,
// its login page also offers the administrators' identity provider,
// through the Access layer's login (access/admin.go).

// openDashboard builds the dashboard; it needs the control service (listen)
// and the Access layer (layers.go).
func (s *Server) openDashboard() error {
	dc := dashboard.Config{Sessions: s.svc, Logger: s.log}
	if s.cfg.AdminSSO.Enabled() {
		dc.SSO = s.access.AdminLogin(s.cfg.AdminSSO)
		s.svc.SetAdminSSO(s.cfg.AdminSSO.Allows)
	}
	d, err := dashboard.New(dc)
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	s.dashboard = d
	s.metrics.traffic = newTraffic(s.node, s.state) // traffic.go: what the dashboard graphs
	s.endpoints = append(s.endpoints, s.metrics.traffic.endpoints()...)
	return nil
}

// apiHandler is the API listener's handler: /v1/ is the control API (with
// the endpoints of the edge's other parts), the rest the dashboard.
func (s *Server) apiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/", readYourWrites(controlserver.NewHandler(s.svc, s.log, s.endpoints...), s.store.Client(), s.state))
	mux.Handle("/", s.dashboard)
	return mux
}
