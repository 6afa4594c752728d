package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// forbidden are import paths adit-connector must not link: the edge, its
// etcd-backed control plane and command line, and etcd itself (the server,
// and the client, which brings gRPC). Each path forbids the packages below
// it too.
var forbidden = []string{
	"github.com/adit-dev/adit/edge",
	"github.com/adit-dev/adit/internal/store",
	"github.com/adit-dev/adit/control/controlserver",
	"github.com/adit-dev/adit/cli/edgecmd",
	"go.etcd.io/etcd/server/v3",
	"go.etcd.io",
}

// TestNoEdgeDependencies fails if the adit-connector binary's dependencies
// include the edge or etcd, which would bring back the memory (pages of
// their code and data touched at start-up) this binary exists to save.
func TestNoEdgeDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go") // go test puts GOROOT/bin on PATH
	if err != nil {
		t.Fatalf("no go command: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/adit-dev/adit/connector") {
		t.Fatalf("go list -deps lacks github.com/adit-dev/adit/connector; got %d packages:\n%s", len(deps), out)
	}
	for _, dep := range deps {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, strings.TrimSuffix(f, "/")+"/") {
				t.Errorf("adit-connector depends on %s (forbidden: %s); see `go list -deps ./cmd/adit-connector` for who imports it", dep, f)
			}
		}
	}
}
