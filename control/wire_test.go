package control

import (
	"fmt"
	"os"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestErrorCode(t *testing.T) {
	for _, c := range errorCodes {
		wrapped := fmt.Errorf("context: %w", Errorf(c.err, "detail"))
		code, status, ok := ErrorCode(wrapped)
		if !ok || code != c.code || status != c.status {
			t.Errorf("ErrorCode(%v) = %q, %d, %v; want %q, %d, true", wrapped, code, status, ok, c.code, c.status)
		}
	}
	if code, status, ok := ErrorCode(os.ErrNotExist); ok {
		t.Errorf("ErrorCode(os.ErrNotExist) = %q, %d, true; want ok false", code, status)
	}
}

// TestOpenAPIErrorCodes keeps the error codes in docs/openapi.yaml and
// errorCodes in step; controlserver's TestOpenAPIDescribesEveryEndpoint
// checks the endpoints.
func TestOpenAPIErrorCodes(t *testing.T) {
	data, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas struct {
				Error struct {
					Properties struct {
						Code struct {
							Enum []string `yaml:"enum"`
						} `yaml:"code"`
					} `yaml:"properties"`
				} `yaml:"Error"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	codes := []string{"internal"}
	for _, c := range errorCodes {
		codes = append(codes, c.code)
	}
	slices.Sort(codes)
	got := slices.Sorted(slices.Values(doc.Components.Schemas.Error.Properties.Code.Enum))
	if !slices.Equal(got, codes) {
		t.Errorf("documented error codes = %q, want %q", got, codes)
	}
}
