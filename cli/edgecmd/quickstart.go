package edgecmd

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/cli"
	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/internal/procs"
)

func newQuickstartCmd(g *cli.Env) *cobra.Command {
	var (
		url      string
		httpAddr string
		dataDir  string
	)
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "Start an edge and a connected tunnel on this machine and print its URL",
		Long: `Start, in one process, an edge with an embedded etcd, create a tunnel, route a
random name under .localhost to it, connect a connector over QUIC on loopback
to --url (or to the built-in hello_world origin), and print the URL.
Ctrl-C stops everything. Data lives in a temporary directory unless --data-dir.`,
		Args: cli.ExactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runQuickstart(cmd.Context(), g, url, httpAddr, dataDir)
		},
	}
	cmd.Flags().StringVar(&url, "url", "hello_world", "origin to expose (e.g. http://localhost:3000)")
	cmd.Flags().StringVar(&httpAddr, "http-addr", ":8080", "public HTTP listen address")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "edge data directory (default: a temporary one, removed on exit)")
	return cmd
}

func runQuickstart(ctx context.Context, g *cli.Env, url, httpAddr, dataDir string) error {
	log := g.Logger()
	procs.Adapt(ctx, procs.Config{Logger: log}) // one P while the load is light
	ing, err := ingress.FromURL(url)
	if err != nil {
		return err
	}
	if dataDir == "" {
		dataDir, err = os.MkdirTemp("", "adit-quickstart-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dataDir)
	}
	srv, err := edge.Start(ctx, edge.Config{
		DataDir:    dataDir,
		HTTPAddr:   httpAddr,
		TunnelAddr: "127.0.0.1:0",
		APIAddr:    "127.0.0.1:0",
		Logger:     log,
	})
	if err != nil {
		return startError(err) // listen.go: only --http-addr is the user's
	}
	defer srv.Close()

	name := randomName()
	secret := make([]byte, 32)
	rand.Read(secret)
	svc := srv.Service()
	t, err := svc.CreateTunnel(ctx, "quickstart-"+name, secret)
	if err != nil {
		return err
	}
	hostname := name + ".localhost"
	if _, err := svc.RouteDNS(ctx, t.ID, hostname, true); err != nil {
		return err
	}
	srv.Sync(ctx)
	c, err := connector.New(connector.Config{
		TunnelID:    t.ID,
		Secret:      secret,
		EdgeAddrs:   []string{srv.TunnelAddr().String()},
		EdgeCA:      srv.CAPEM(),
		ServerName:  "localhost",
		Ingress:     ing,
		GracePeriod: 5 * time.Second,
		Logger:      log,
	})
	if err != nil {
		return err
	}
	runErr := make(chan error, 1)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { runErr <- c.Run(cctx) }()
	select {
	case <-c.Ready():
	case err := <-runErr:
		return fmt.Errorf("quickstart: connector stopped: %w", err)
	case <-ctx.Done():
		return nil
	}
	_, port, _ := net.SplitHostPort(srv.HTTPAddr().String())
	publicURL := "http://" + net.JoinHostPort(hostname, port)
	fmt.Fprintf(g.Stdout, "\nYour quickstart tunnel is ready:\n\n    %s\n\n", publicURL)
	fmt.Fprintf(g.Stdout, "It serves %s through tunnel %s over QUIC. Try:\n    curl %s\n", url, t.ID, publicURL)
	fmt.Fprintln(g.Stdout, "(*.localhost resolves to this machine; if yours does not, use: curl -H 'Host: "+hostname+"' http://127.0.0.1:"+port+")")
	fmt.Fprintln(g.Stdout, "Press Ctrl-C to stop.")
	select {
	case <-ctx.Done():
	case err := <-runErr:
		return err
	}
	cancel()
	<-runErr
	return nil
}

var (
	adjectives = []string{"brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "kind", "lively", "merry", "nimble", "proud", "quick", "silly", "witty", "zesty"}
	animals    = []string{"otter", "badger", "falcon", "heron", "lynx", "marten", "newt", "owl", "panda", "quail", "robin", "seal", "tapir", "vole", "wombat", "yak"}
)

// randomName is an adjective-animal-NNNN name, easy to read and type.
func randomName() string {
	pick := func(list []string) string {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(list))))
		return list[n.Int64()]
	}
	n, _ := rand.Int(rand.Reader, big.NewInt(10000))
	return fmt.Sprintf("%s-%s-%04d", pick(adjectives), pick(animals), n.Int64())
}
