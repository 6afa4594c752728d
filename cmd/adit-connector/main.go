// Command adit-connector is adit for private machines: every command a
// connector host needs (tunnel run, tunnel ready, tunnel ingress, access,
// version, login and the tunnel admin verbs that talk to the edge's API),
// with adit's flags, environment, config file and output, but not `edge` or
// `quickstart`. It does not link the edge, its embedded etcd server or
// package store, so it is smaller and rests in less memory than adit;
// main_test.go keeps it that way.
package main

import "github.com/adit-dev/adit/cli"

func main() {
	cli.Run(cli.Program{
		Name:  "adit-connector",
		Short: "adit-connector runs adit tunnels on private machines (adit without the edge)",
	})
}
