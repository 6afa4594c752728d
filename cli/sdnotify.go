package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/adit-dev/adit/connector"
)

// notifySystemd tells systemd (a Type=notify unit, as `service install`
// writes) that the connector is ready once its first connection is
// registered, so `systemctl start adit` returns when the tunnel is up
// and fails when it cannot come up; and that it is stopping when ctx ends.
// Without $NOTIFY_SOCKET it does nothing. stop ends its wait.
func notifySystemd(ctx context.Context, c *connector.Connector, log *slog.Logger) (stop func()) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return func() {}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-c.Ready():
			if err := sdNotify("READY=1\nSTATUS=connected to the edge"); err != nil {
				log.Warn("systemd notification not sent", "err", err)
			}
		case <-done:
			return
		}
		select {
		case <-ctx.Done():
			sdNotify("STOPPING=1\nSTATUS=draining requests in flight")
		case <-done:
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// sdNotify sends state to $NOTIFY_SOCKET (sd_notify(3)): a unix datagram
// socket, in the abstract namespace when the name starts with @.
func sdNotify(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("NOTIFY_SOCKET: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("NOTIFY_SOCKET: %w", err)
	}
	return nil
}
