package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/tunnel"
)

// version is the module version of this build ("(devel)" from a checkout),
// with the VCS revision when the build recorded one.
func version() string {
	v := connector.Version
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += "+" + s.Value[:12]
			}
		}
	}
	return v
}

func newVersionCmd(g *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the adit version, protocol and Go version",
		Args:  ExactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintln(g.Stdout, versionLine())
			return err
		},
	}
}

// versionLine is what `adit version` and `adit --version` print.
func versionLine() string {
	return fmt.Sprintf("adit %s (protocol %s.%d, %s %s/%s)",
		version(), tunnel.ALPN, tunnel.ProtocolVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
