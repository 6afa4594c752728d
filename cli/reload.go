package cli

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/connector/configwatch"
	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/internal/logs"
)

// watchConfig reloads c's ingress rules from path whenever the file changes
// and on SIGHUP, until ctx is done or the returned stop is called (which
// waits for the watcher to finish). cur is the config c was started with.
// SIGHUP is caught from the moment watchConfig returns.
func watchConfig(ctx context.Context, log *slog.Logger, path string, cur *ingress.Config, c *connector.Connector) (stop func(), err error) {
	w, err := configwatch.New(configwatch.Config{
		Path:    path,
		Current: cur,
		Apply:   c.SetIngress,
		Logger:  log,
	})
	if err != nil {
		return nil, err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				logs.Component(log, "configwatch").Info("SIGHUP: reloading the config", "config", path)
				w.Reload()
			}
		}
	})
	return func() {
		signal.Stop(hup)
		cancel()
		wg.Wait()
	}, nil
}
