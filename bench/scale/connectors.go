package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/ingress"
)

// fleetSpec is what a connector process runs: its share of the tunnels.
// The parent writes it to a file named by the child's only argument.
type fleetSpec struct {
	EdgeAddr string       `json:"edge_addr"`
	EdgeCA   []byte       `json:"edge_ca"`
	Conns    int          `json:"conns"`
	Protocol string       `json:"protocol"`
	Rate     float64      `json:"rate"` // connectors started per second; 0: all at once
	Tunnels  []tunnelSpec `json:"tunnels"`
}

type tunnelSpec struct {
	ID     string `json:"id"`
	Secret []byte `json:"secret"`
	Bind   net.IP `json:"bind,omitempty"` // the local address its connections dial from; nil: any
}

// bindAddr is the i-th of n loopback addresses the connectors dial from,
// 127.0.0.2 onwards, or nil (any) when n is 0.
func bindAddr(i, n int) net.IP {
	if n == 0 {
		return nil
	}
	a := 0x7f000002 + uint32(i%n)
	return net.IPv4(byte(a>>24), byte(a>>16), byte(a>>8), byte(a))
}

// runConnectors is a connector process: one connector.Connector per
// tunnel of its spec, each answering every request with 204 (no origin to
// dial), until SIGTERM. It prints "started N" once every connector runs.
func runConnectors() int {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "scale connectors: want one argument, the spec file")
		return 2
	}
	b, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var spec fleetSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		fmt.Fprintln(os.Stderr, "scale connectors:", err)
		return 1
	}
	ing, err := ingress.FromURL("http_status:204")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	var wg sync.WaitGroup
	for _, t := range spec.Tunnels {
		c, err := connector.New(connector.Config{
			TunnelID: t.ID, Secret: t.Secret, EdgeAddrs: []string{spec.EdgeAddr},
			EdgeCA: spec.EdgeCA, ServerName: "localhost", Ingress: ing,
			HAConnections: spec.Conns, Protocol: spec.Protocol, GracePeriod: time.Second,
			BindAddr: t.Bind, Logger: log,
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "scale connectors:", err)
			return 1
		}
		wg.Go(func() { c.Run(ctx) })
		// A burst of thousands of handshakes at once times some out on a
		// loaded machine, and those back off for up to 30s.
		if spec.Rate > 0 {
			time.Sleep(time.Duration(float64(time.Second) / spec.Rate))
		}
	}
	fmt.Printf("started %d\n", len(spec.Tunnels))
	wg.Wait()
	return 0
}

// raiseFileLimit lifts this process's limit on open files, soft and hard
// (when allowed: root), before the children start, which inherit it: the
// edge holds a socket per WebSocket connection, and a connector process
// one per connection (each QUIC connection dials from its own UDP port).
// Go itself only lifts the soft limit to the hard one.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return
	}
	want := max(l.Max, 1<<20)
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}) != nil {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
