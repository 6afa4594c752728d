package edge

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNodeName(t *testing.T) {
	dir := t.TempDir()
	first, err := nodeName(dir, "")
	if err != nil || first == "" {
		t.Fatalf("nodeName (new) = %q, %v", first, err)
	}
	if again, err := nodeName(dir, ""); err != nil || again != first {
		t.Errorf("nodeName (kept) = %q, %v; want %q", again, err, first)
	}
	if got, err := nodeName(dir, "edge-eu-1"); err != nil || got != "edge-eu-1" {
		t.Errorf("nodeName (configured) = %q, %v; want edge-eu-1", got, err)
	}
	if kept, _ := nodeName(dir, ""); kept != first {
		t.Errorf("a configured name replaced the kept one: %q, want %q", kept, first)
	}
	for _, tc := range []struct{ name, file, want string }{
		{"empty file", "\n", "empty"},
		{"space", "a b\n", "space"},
		{"too long", strings.Repeat("x", 200), "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			os.WriteFile(filepath.Join(d, NodeNameFile), []byte(tc.file), 0o600)
			if _, err := nodeName(d, ""); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), NodeNameFile) {
				t.Errorf("nodeName = %v, want an error naming the file and %q", err, tc.want)
			}
		})
	}
	if _, err := nodeName(t.TempDir(), "bad name"); err == nil {
		t.Error("nodeName accepted a configured name with a space")
	}
}

// TestNodeNameSurvivesRestart: an edge restarted on its data directory
// keeps its node name, and with it its admin token working.
func TestNodeNameSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	start := func(node string) *Server {
		t.Helper()
		s, err := Start(context.Background(), Config{DataDir: dir, NodeName: node,
			HTTPAddr: "127.0.0.1:0", TunnelAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := start("")
	first := s.Node()
	tok, err := os.ReadFile(s.AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = start("")
	if s.Node() != first {
		t.Errorf("node after restart = %q, want %q", s.Node(), first)
	}
	if !s.Service().CheckToken(t.Context(), strings.TrimSpace(string(tok))) {
		t.Error("the admin token stopped working across a restart")
	}
	s.Close()

	s = start("edge-override")
	defer s.Close()
	if s.Node() != "edge-override" {
		t.Errorf("node with NodeName = %q, want edge-override", s.Node())
	}
}
