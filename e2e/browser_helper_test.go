package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"
)

// The browser tests drive Debian's chromium with npm's playwright-core
// from a script in e2e/browser (.ci/run installs both).

// needBrowser returns the paths of chromium and node, skipping the test,
// saying why, when either or playwright-core is missing.
func needBrowser(t *testing.T) (chromium, node string) {
	t.Helper()
	chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed (.ci/run installs chromium and npm's playwright-core)")
	}
	if _, err := os.Stat("browser/node_modules/playwright-core"); err != nil {
		t.Skip("playwright-core is not installed (npm ci in e2e/browser; .ci/run does it)")
	}
	return chromium, node
}

// runBrowser runs e2e/browser/script with cfg as JSON in ADIT_BROWSER_TEST
// for at most limit, and returns what it printed (one JSON object).
func runBrowser(t *testing.T, node, script string, cfg any, limit time.Duration) []byte {
	t.Helper()
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = "browser"
	cmd.Env = append(os.Environ(), "ADIT_BROWSER_TEST="+string(js))
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("playwright %s: %v\n%s\n%s", script, err, out, stderr)
	}
	return out
}
