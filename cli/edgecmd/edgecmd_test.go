package edgecmd

import (
	"bytes"
	"strings"
	"testing"

	"github.com/adit-dev/adit/cli"
)

// TestCommands: adit's edge commands are registered with their flags, and
// refuse arguments with cli's one-line error. Nothing here starts an edge.
func TestCommands(t *testing.T) {
	prog := cli.Program{Commands: Commands()}
	for _, tt := range []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string
		wantErrOut string
	}{
		{"edge help", []string{"edge", "--help"}, 0, "--etcd-endpoints", ""},
		{"edge ops flags", []string{"edge", "--help"}, 0, "--max-header-bytes", ""},
		{"quickstart help", []string{"quickstart", "--help"}, 0, "--data-dir", ""},
		{"edge args", []string{"edge", "x"}, 1, "", "adit: edge: want no arguments, got 1 argument(s)"},
		{"quickstart args", []string{"quickstart", "x"}, 1, "", "adit: quickstart: want no arguments, got 1 argument(s)"},
		{"shared commands stay", []string{"tunnel", "info"}, 1, "", "adit: tunnel info: want a tunnel NAME or UUID"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := cli.Main(t.Context(), prog, append([]string{"--home", t.TempDir()}, tt.args...), &out, &errOut)
			if code != tt.wantCode {
				t.Errorf("exit code: got %d, want %d (stderr %q)", code, tt.wantCode, errOut.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("stdout: got %q, want it to contain %q", out.String(), tt.wantOut)
			}
			if !strings.Contains(errOut.String(), tt.wantErrOut) {
				t.Errorf("stderr: got %q, want it to contain %q", errOut.String(), tt.wantErrOut)
			}
		})
	}
}

func TestRandomName(t *testing.T) {
	for range 20 {
		name := randomName()
		parts := strings.Split(name, "-")
		if len(parts) != 3 || len(parts[2]) != 4 {
			t.Fatalf("randomName() = %q, want adjective-animal-NNNN", name)
		}
	}
}
