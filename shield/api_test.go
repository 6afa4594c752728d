package shield

import (
	"os"
	"testing"

	"github.com/adit-dev/adit/control/controlserver"
)

// TestOpenAPIDescribesEndpoints keeps docs/openapi.yaml and Endpoints in
// step: the paths marked x-adit-package: shield are exactly those served.
func TestOpenAPIDescribesEndpoints(t *testing.T) {
	data, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	problems, err := controlserver.CheckDocumented(data, "shield", Endpoints(nil, nil))
	if err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}
