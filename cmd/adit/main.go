// Command adit is the edge and the connector of a self-hosted tunnel: every
// command of package cli, and the edge's from package edgecmd.
// cmd/adit-connector is the same without the edge.
package main

import (
	"github.com/adit-dev/adit/cli"
	"github.com/adit-dev/adit/cli/edgecmd"
)

func main() {
	cli.Run(cli.Program{Name: "adit", Commands: edgecmd.Commands()})
}
