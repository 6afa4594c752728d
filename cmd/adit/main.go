// Command adit is the edge and the connector of a self-hosted tunnel; see
// package cli for its commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/adit-dev/adit/cli"
)

func main() {
	// The first SIGINT/SIGTERM cancels ctx and the command shuts down
	// gracefully; once it has, a second signal kills the process at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	os.Exit(cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
