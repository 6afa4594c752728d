package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/adit-dev/adit/credentials"
)

// TestConnectorThroughHTTPSProxy runs `adit tunnel run` where the only way
// out is an HTTP CONNECT proxy (Debian's tinyproxy, given in HTTPS_PROXY):
// the connector reaches the edge over the WebSocket transport through it,
// and the tunnel serves.
func TestConnectorThroughHTTPSProxy(t *testing.T) {
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		t.Skip("tinyproxy is not installed (apt-get install tinyproxy; .ci/run installs it)")
	}
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "proxied", "proxied.test")
	origin := helloOrigin(t, "through the proxy")
	_, edgePort, _ := net.SplitHostPort(srv.TunnelTCPAddr().String())

	// tinyproxy cannot listen on port 0: take a free port and hand it over.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxyPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "tinyproxy.conf")
	os.WriteFile(conf, []byte(strings.Join([]string{
		"Listen 127.0.0.1",
		"Port " + strconv.Itoa(proxyPort),
		"Timeout 60",
		"Allow 127.0.0.1",
		"ConnectPort " + edgePort,
		"LogLevel Info",
	}, "\n")+"\n"), 0o600)
	proxy := &proc{cmd: exec.Command(bin, "-d", "-c", conf), out: newWatchBuffer(), done: make(chan struct{})}
	proxy.cmd.Stdout, proxy.cmd.Stderr = proxy.out, proxy.out
	if err := proxy.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { proxy.err = proxy.cmd.Wait(); close(proxy.done) }()
	t.Cleanup(func() { proxy.stop(t) })
	proxy.waitMatch(t, regexp.MustCompile(`Accepting connections`))

	credPath := filepath.Join(dir, "cred.json")
	cred := &credentials.File{TunnelID: tun.ID, TunnelSecret: tun.Secret, EdgeCA: string(srv.CAPEM())}
	if err := cred.Save(credPath); err != nil {
		t.Fatal(err)
	}
	// "127.1" is 127.0.0.1 to tinyproxy's resolver, but not a loopback
	// name to the proxy rules, which never proxy loopback addresses.
	conn := startAdit(t, []string{"HTTPS_PROXY=http://127.0.0.1:" + strconv.Itoa(proxyPort), "NO_PROXY="},
		"tunnel", "run", "--credentials-file", credPath, "--url", origin.URL,
		"--protocol", "websocket", "--edge", "127.1:"+edgePort, "--edge-server-name", "localhost",
		"--ha-connections", "1")
	conn.waitMatch(t, regexp.MustCompile(`connection registered`))
	if code, body := getVia(srv.HTTPAddr().String(), "proxied.test"); code != 200 || body != "through the proxy" {
		t.Errorf("got %d %q", code, body)
	}
	if !strings.Contains(proxy.out.String(), "CONNECT") {
		t.Errorf("tinyproxy saw no CONNECT:\n%s", proxy.out.String())
	}
}
