package publictls

import (
	"os"
	"testing"

	"github.com/adit-dev/adit/control/controlserver"
)

// TestOpenAPIDescribesEndpoints keeps docs/openapi.yaml and Endpoints in
// step: the paths marked x-adit-package: publictls are exactly those served.
func TestOpenAPIDescribesEndpoints(t *testing.T) {
	data, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	documented, err := controlserver.DocumentedEndpoints(data, "publictls")
	if err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	for _, e := range (&Manager{}).Endpoints() {
		if !documented[e.Pattern] {
			t.Errorf("endpoint %s is not in docs/openapi.yaml (with x-adit-package: publictls)", e.Pattern)
		}
		delete(documented, e.Pattern)
	}
	for op := range documented {
		t.Errorf("docs/openapi.yaml describes %s, which package publictls does not serve", op)
	}
}
