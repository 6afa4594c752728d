package edgecmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adit-dev/adit/cli"
)

// TestEtcdFlags: the etcd security flags are checked before anything
// starts, and a plaintext endpoint on another machine is refused naming
// the flag that allows it. Nothing here reaches an etcd.
func TestEtcdFlags(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"plaintext elsewhere", []string{"--etcd-endpoints", "http://192.0.2.10:2379"}, "in clear; use https:// with the cluster's CA, or allow it explicitly; pass --etcd-insecure to allow it"},
		{"bare endpoint", []string{"--etcd-endpoints", "192.0.2.10:2379"}, "want https://host:port"},
		{"CA without endpoints", []string{"--etcd-ca", "ca.pem"}, "--etcd-ca is for an external etcd: it needs --etcd-endpoints"},
		{"insecure without endpoints", []string{"--etcd-insecure"}, "--etcd-insecure is for an external etcd"},
		{"user without password", []string{"--etcd-endpoints", "https://192.0.2.10:2379", "--etcd-user", "adit"}, "--etcd-user needs --etcd-password-file"},
		{"password without user", []string{"--etcd-endpoints", "https://192.0.2.10:2379", "--etcd-password-file", pwFile}, "--etcd-password-file needs --etcd-user"},
		{"empty password", []string{"--etcd-endpoints", "https://192.0.2.10:2379", "--etcd-user", "adit", "--etcd-password-file", empty}, "is empty"},
		{"cert without key", []string{"--etcd-endpoints", "https://192.0.2.10:2379", "--etcd-cert", "c.pem"}, "both its certificate and its key"},
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
