package edgecmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adit-dev/adit/cli"
)

// TestFleetFlags: --join and --join-token-file go together, the token
// comes from a file only, and --region is checked, before anything starts.
func TestFleetFlags(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"join without token", []string{"--join", "https://192.0.2.1:7845"}, "--join needs --join-token-file"},
		{"token without join", []string{"--join-token-file", empty}, "--join-token-file needs --join"},
		{"empty token file", []string{"--join", "https://192.0.2.1:7845", "--join-token-file", empty}, "is empty"},
		{"missing token file", []string{"--join", "https://192.0.2.1:7845", "--join-token-file", empty + ".x"}, "--join-token-file: open"},
		{"join on external etcd", []string{"--join", "https://192.0.2.1:7845", "--join-token-file", empty, "--etcd-endpoints", "https://192.0.2.1:2379"}, "--join is for edges with an embedded etcd"},
		{"bad region", []string{"--region", "eu west"}, `region "eu west"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append([]string{"--home", t.TempDir(), "edge", "--data-dir", t.TempDir(),
				"--http-addr", "127.0.0.1:0", "--tunnel-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0"}, tc.args...)
			code := cli.Main(t.Context(), cli.Program{Commands: Commands()}, args, &out, &errOut)
			if code != 1 || !strings.Contains(errOut.String(), tc.want) || strings.Count(errOut.String(), "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want 1 and one line containing %q", code, errOut.String(), tc.want)
			}
		})
	}
}
