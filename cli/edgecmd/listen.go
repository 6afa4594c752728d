package edgecmd

import (
	"errors"

	"github.com/adit-dev/adit/cli"
	"github.com/adit-dev/adit/edge"
)

// listenFlags name the flag of each edge listener (edge.ListenError).
var listenFlags = map[string]string{
	"http":      "--http-addr",
	"https":     "--https-addr",
	"api":       "--api-addr",
	"tunnel":    "--tunnel-addr",
	"metrics":   "--metrics",
	"etcd-peer": "--etcd-peer-addr",
	"peer":      "--peer-addr",
}

// startError names the flag to change when an edge listener's address is
// taken.
func startError(err error) error {
	var le *edge.ListenError
	if errors.As(err, &le) {
		return cli.AddrInUse(err, listenFlags[le.Listener])
	}
	return err
}
