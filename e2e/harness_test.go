package e2e

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/internal/poll"
)

// aditBin is the adit binary built by TestMain.
var aditBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "adit-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	aditBin = filepath.Join(dir, "adit")
	build := exec.Command("go", "build", "-o", aditBin, "github.com/adit-dev/adit/cmd/adit")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building adit:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testLogger logs to the test's output at debug level when -v, else
// discards.
func testLogger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(&tWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct {
	mu sync.Mutex
	t  testing.TB
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startEdge starts an in-process edge on 127.0.0.1 port 0.
func startEdge(t testing.TB, dataDir string) *edge.Server {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	srv, err := edge.Start(context.Background(), edge.Config{
		DataDir:    dataDir,
		HTTPAddr:   "127.0.0.1:0",
		TunnelAddr: "127.0.0.1:0",
		APIAddr:    "127.0.0.1:0",
		Logger:     testLogger(t).With("side", "edge"),
	})
	if err != nil {
		t.Fatalf("starting edge: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// tunnelFixture is a tunnel created on an edge.
type tunnelFixture struct {
	ID     string
	Secret []byte
}

func createTunnel(t testing.TB, srv *edge.Server, name string, hostnames ...string) tunnelFixture {
	t.Helper()
	ctx := context.Background()
	secret := make([]byte, 32)
	rand.Read(secret)
	tun, err := srv.Service().CreateTunnel(ctx, name, secret)
	if err != nil {
		t.Fatalf("creating tunnel: %v", err)
	}
	for _, h := range hostnames {
		if _, err := srv.Service().RouteDNS(ctx, tun.ID, h, false); err != nil {
			t.Fatalf("routing %s: %v", h, err)
		}
	}
	srv.Sync(ctx)
	return tunnelFixture{ID: tun.ID, Secret: secret}
}

// startConnector runs an in-process connector for tun and waits until it
// is registered.
func startConnector(t testing.TB, srv *edge.Server, tun tunnelFixture, ing *ingress.Ingress, mods ...func(*connector.Config)) *connector.Connector {
	t.Helper()
	cfg := connector.Config{
		TunnelID:      tun.ID,
		Secret:        tun.Secret,
		EdgeAddrs:     []string{srv.TunnelAddr().String()},
		EdgeCA:        srv.CAPEM(),
		ServerName:    "localhost",
		Ingress:       ing,
		HAConnections: 2,
		GracePeriod:   5 * time.Second,
		Logger:        testLogger(t).With("side", "connector"),
	}
	for _, m := range mods {
		m(&cfg)
	}
	return runConnector(t, cfg)
}

// runConnector runs an in-process connector until the test ends and waits
// until it is registered.
func runConnector(t testing.TB, cfg connector.Config) *connector.Connector {
	t.Helper()
	c, done := goConnector(t, cfg)
	select {
	case <-c.Ready():
	case err := <-done:
		t.Fatalf("connector stopped before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("connector not ready after 30s")
	}
	return c
}

// goConnector runs an in-process connector until the test ends, without
// waiting for it to register; done receives Run's error.
func goConnector(t testing.TB, cfg connector.Config) (*connector.Connector, <-chan error) {
	t.Helper()
	c, err := connector.New(cfg)
	if err != nil {
		t.Fatalf("connector: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return c, done
}

func mustIngress(t testing.TB, url string) *ingress.Ingress {
	t.Helper()
	ing, err := ingress.FromURL(url)
	if err != nil {
		t.Fatalf("ingress %s: %v", url, err)
	}
	return ing
}

// edgeClient talks to the edge's public listener whatever the Host.
var edgeClient = &http.Client{Transport: &http.Transport{
	MaxIdleConnsPerHost: 256,
	DisableCompression:  true,
	TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS13},
}}

func edgeURL(srv *edge.Server, path string) string {
	return "http://" + srv.HTTPAddr().String() + path
}

func edgeGet(srv *edge.Server, host, path string) (*http.Response, error) {
	req, err := http.NewRequest("GET", edgeURL(srv, path), nil)
	if err != nil {
		return nil, err
	}
	req.Host = host
	return edgeClient.Do(req)
}

func readAll(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return string(b)
}

// waitFor polls cond until it holds, failing the test after 30s. It is for
// conditions with no event to wait on (a route propagating through etcd).
var waitFor = poll.Until

// waitWithin polls cond until it holds or d has passed, and reports
// whether it held: for a deadline that is the assertion, a failure that
// says more than waitFor's, or a goroutine that must not call t.Fatal.
var waitWithin = poll.Within

// freeUDPAddr returns a loopback address whose port was free a moment ago:
// an edge address where nothing answers. (An edge that must keep its
// address across a restart starts on port 0 and restarts on the address
// it bound, so no test races for a port.)
func freeUDPAddr(t testing.TB) string {
	t.Helper()
	// The edge listens on TCP with the same port number (WebSocket
	// transport): take a port free on both, or a TCP connection that
	// happens to use the number locally makes the edge fail to start.
	for range 50 {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := c.LocalAddr().String()
		ln, err := net.Listen("tcp", addr)
		c.Close()
		if err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no loopback port free on both UDP and TCP in 50 tries")
	return ""
}

// syncBuffer is a log sink tests can read while it is written.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// withLogBuffer sends the connector's logs to buf as text.
func withLogBuffer(buf *syncBuffer) func(*connector.Config) {
	return func(c *connector.Config) {
		c.Logger = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

// protocols are the tunnel transports every HTTP behaviour is tested over.
var protocols = []string{"quic", "websocket"}

// forEachProtocol runs test once per transport, as subtests.
func forEachProtocol(t *testing.T, test func(t *testing.T, proto string)) {
	for _, p := range protocols {
		t.Run(p, func(t *testing.T) { test(t, p) })
	}
}

// withProtocol makes the connector use one transport.
func withProtocol(p string) func(*connector.Config) {
	return func(c *connector.Config) { c.Protocol = p }
}
