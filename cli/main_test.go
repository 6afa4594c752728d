package cli

import (
	"context"
	"os"
	"testing"
)

// asAditEnv makes the test binary run adit's command line instead of the
// tests: a test that needs `adit` on a shell's PATH links it there.
const asAditEnv = "ADIT_CLI_TEST_AS_ADIT"

func TestMain(m *testing.M) {
	if os.Getenv(asAditEnv) == "1" {
		os.Exit(Main(context.Background(), Program{}, os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
