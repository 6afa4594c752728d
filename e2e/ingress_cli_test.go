package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIngressValidateCorpus runs the adit binary's `tunnel ingress validate
// --config` over the ingress package's corpus, as a user would: every good
// config prints OK and exits 0; every bad one exits 1 with the substring of
// its "# want: " first line.
func TestIngressValidateCorpus(t *testing.T) {
	env := []string{"ADIT_HOME=" + t.TempDir(), "HOME=" + t.TempDir()}
	good, _ := filepath.Glob("../ingress/testdata/good/*.yml")
	bad, _ := filepath.Glob("../ingress/testdata/bad/*.yml")
	if len(good) == 0 || len(bad) == 0 {
		t.Fatalf("corpus not found: %d good, %d bad files", len(good), len(bad))
	}
	for _, file := range good {
		t.Run("good/"+filepath.Base(file), func(t *testing.T) {
			out, code := runAdit(t, env, "tunnel", "ingress", "validate", "--config", file)
			if code != 0 || !strings.HasSuffix(out, "\nOK\n") {
				t.Errorf("exit %d, output %q; want 0 and OK", code, out)
			}
		})
	}
	for _, file := range bad {
		t.Run("bad/"+filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("first line %q is not \"# want: <error substring>\"", first)
			}
			out, code := runAdit(t, env, "tunnel", "ingress", "validate", "--config", file)
			if code != 1 || !strings.Contains(out, want) {
				t.Errorf("exit %d, output %q; want 1 and %q", code, out, want)
			}
		})
	}
}
