package edge

import (
	"os"
	"testing"

	"github.com/adit-dev/adit/control/controlserver"
)

// TestFleetEndpointsDocumented: the edge's own API endpoints (the fleet's
// and the request log's) and docs/openapi.yaml agree.
func TestFleetEndpointsDocumented(t *testing.T) {
	data, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{}
	served := append(s.fleetEndpoints(),
		controlserver.Endpoint{Pattern: "POST /v1/fleet/join"},
		newRequestLog("n", fixedRouter("t"), nil).endpoint(nil))
	problems, err := controlserver.CheckDocumented(data, "edge", served)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}
