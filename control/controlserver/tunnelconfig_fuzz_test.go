package controlserver

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/adit-dev/adit/ingress"
)

// FuzzParseTunnelConfig: what the edge accepts as a remote configuration
// holds only rules (no connector settings), compiles, and survives the
// conversion to the API's JSON shape: that JSON is accepted again as the
// same configuration, as a team moving rules between edges would send it.
func FuzzParseTunnelConfig(f *testing.F) {
	files, _ := filepath.Glob("../../ingress/testdata/*/*.yml")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(twoRules))
	f.Add([]byte(`{"ingress":[{"hostname":"a.example.com","service":"http://localhost:9000","originRequest":{"connectTimeout":10}},{"service":"http_status:404"}],"warp-routing":{"enabled":false}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		cfg, err := ParseTunnelConfig(doc)
		if err != nil {
			return
		}
		if _, err := ingress.New(cfg); err != nil {
			t.Fatalf("accepted a configuration New refuses: %v", err)
		}
		var top map[string]any
		if err := yaml.Unmarshal(doc, &top); err == nil {
			for k := range top {
				if !slices.Contains(remoteKeys, k) {
					t.Fatalf("accepted top-level key %q", k)
				}
			}
		}
		js := configJSON(doc)
		again, err := ParseTunnelConfig(js)
		if err != nil {
			t.Fatalf("its JSON form %s is refused: %v", js, err)
		}
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("its JSON form %s is another configuration:\n got %+v\nwant %+v", js, again, cfg)
		}
	})
}
