package edgedns

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestEdgeLabel(t *testing.T) {
	tests := []struct{ name, want string }{
		{"edge-1", "edge-1"},
		{"host-ab12cd", "host-ab12cd"},
		{"Edge-1", "edge-1-"}, // a digest follows: another node may be "edge-1"
		{"a.b.c", "a-b-c-"},   // dots would make labels of their own
		{"ünï", "n-"},         // letters outside a-z dropped
		{"---", "edge-"},
		{strings.Repeat("x", 100), strings.Repeat("x", maxLabelBase) + "-"},
	}
	for _, tt := range tests {
		got := edgeLabel(tt.name)
		if got != tt.want && !(strings.HasSuffix(tt.want, "-") && strings.HasPrefix(got, tt.want) && len(got) == len(tt.want)+8) {
			t.Errorf("edgeLabel(%q) = %q, want %q (and a digest after a final hyphen)", tt.name, got, tt.want)
		}
		if _, ok := dns.IsDomainName(got + ".example.com."); !ok || len(got) > 63 || strings.ToLower(got) != got {
			t.Errorf("edgeLabel(%q) = %q: not a lower-case DNS label", tt.name, got)
		}
	}
	if edgeLabel("Edge-1") == edgeLabel("edge-1") || edgeLabel("a.b") == edgeLabel("a-b") {
		t.Error("two node names met on one label")
	}
}
