package shield

import (
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestOpenAPIDescribesEndpoints keeps docs/openapi.yaml and Endpoints in
// step: the paths marked x-adit-package: shield are exactly those served.
func TestOpenAPIDescribesEndpoints(t *testing.T) {
	data, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		if ops["x-adit-package"] != "shield" {
			continue
		}
		for method := range ops {
			if method != "parameters" && !strings.HasPrefix(method, "x-") {
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	for _, e := range Endpoints(nil) {
		if !documented[e.Pattern] {
			t.Errorf("endpoint %s is not in docs/openapi.yaml (with x-adit-package: shield)", e.Pattern)
		}
		delete(documented, e.Pattern)
	}
	for op := range documented {
		t.Errorf("docs/openapi.yaml describes %s, which package shield does not serve", op)
	}
}
