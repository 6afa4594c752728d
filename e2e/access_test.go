package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adit-dev/adit/carrier"
	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/tunnel/tunneltest"
)

// freeTCPPort finds a port nothing listens on now, for a process or route
// that must be given a concrete port.
func freeTCPPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// echoCheck sends msg on c, half-closes, and checks that want comes back
// followed by a clean end.
func echoCheck(t testing.TB, c net.Conn, msg, want string) {
	t.Helper()
	defer c.Close()
	go func() {
		io.WriteString(c, msg)
		c.(interface{ CloseWrite() error }).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Errorf("reading the echo: %v (got %d bytes)", err, len(got))
		return
	}
	if string(got) != want {
		t.Errorf("echo = %d bytes %.40q, want %d bytes %.40q", len(got), got, len(want), want)
	}
}

func ingressYAML(t testing.TB, yml string) *ingress.Ingress {
	t.Helper()
	cfg, err := ingress.Parse([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	ing, err := ingress.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ing
}

var reListening = regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)

// TestAccessTCP carries TCP through `adit access tcp` (the binary): echo with
// half-close, several connections at once, and a bastion destination.
func TestAccessTCP(t *testing.T) {
	srv := startEdge(t, "")
	echo := tunneltest.EchoServer(t, "")
	tun := createTunnel(t, srv, "access", "echo.example.test", "bastion.example.test")
	startConnector(t, srv, tun, ingressYAML(t, `
ingress:
  - hostname: echo.example.test
    service: tcp://`+echo+`
  - hostname: bastion.example.test
    service: bastion
    originRequest:
      ipRules:
        - prefix: 127.0.0.0/8
          allow: true
  - service: http_status:404
`))
	edgeAddr := "http://" + srv.HTTPAddr().String()

	t.Run("tcp", func(t *testing.T) {
		p := startAdit(t, nil, "access", "tcp", "--hostname", "echo.example.test", "--url", "127.0.0.1:0", "--edge", edgeAddr)
		addr := p.waitMatch(t, reListening)[1]
		var wg sync.WaitGroup
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				msg := strings.Repeat(strconv.Itoa(i), 1<<20)
				echoCheck(t, c, msg, msg)
			}()
		}
		wg.Wait()
	})

	t.Run("bastion via --destination and cloudflared flag names", func(t *testing.T) {
		p := startAdit(t, nil, "access", "rdp", "--tunnel-host", "bastion.example.test", "--listener", "127.0.0.1:0",
			"--edge", edgeAddr, "--destination", echo)
		addr := p.waitMatch(t, reListening)[1]
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		echoCheck(t, c, "via the bastion", "via the bastion")
	})

	t.Run("bastion via the library, cloudflared header", func(t *testing.T) {
		c, err := carrier.Dial(t.Context(), carrier.Options{
			Hostname: "bastion.example.test",
			EdgeURL:  edgeAddr,
			Header:   map[string][]string{carrier.JumpDestinationHeader: {"tcp://" + echo}},
		})
		if err != nil {
			t.Fatal(err)
		}
		echoCheck(t, c, "jump", "jump")
	})

	t.Run("bastion denied by ipRules", func(t *testing.T) {
		_, err := carrier.Dial(t.Context(), carrier.Options{Hostname: "bastion.example.test", EdgeURL: edgeAddr, Destination: "192.0.2.1:22"})
		var re *carrier.RefusedError
		if !errors.As(err, &re) || re.Status != 502 || re.RequestID == "" {
			t.Errorf("dial to a denied destination: got %v, want a 502 refusal with a request ID", err)
		}
	})
}

// TestAccessErrors checks the errors a person sees when TCP and HTTP meet
// the wrong rule, the origin is down, or the tunnel is offline.
func TestAccessErrors(t *testing.T) {
	srv := startEdge(t, "")
	dead := closedAddr(t)
	web := helloOrigin(t, "web page")
	tun := createTunnel(t, srv, "errs", "dead.example.test", "web.example.test", "tcp.example.test")
	var logs syncBuffer
	startConnector(t, srv, tun, ingressYAML(t, `
ingress:
  - hostname: dead.example.test
    service: tcp://`+dead+`
  - hostname: web.example.test
    service: `+web.URL+`
  - hostname: tcp.example.test
    service: tcp://`+dead+`
  - service: http_status:404
`), withLogBuffer(&logs))
	createTunnel(t, srv, "offline", "offline.example.test")
	edgeAddr := "http://" + srv.HTTPAddr().String()

	dialErr := func(host string) *carrier.RefusedError {
		t.Helper()
		c, err := carrier.Dial(t.Context(), carrier.Options{Hostname: host, EdgeURL: edgeAddr})
		if err == nil {
			c.Close()
			t.Fatalf("dial %s succeeded, want a refusal", host)
		}
		var re *carrier.RefusedError
		if !errors.As(err, &re) {
			t.Fatalf("dial %s: got %v, want a *carrier.RefusedError", host, err)
		}
		return re
	}

	t.Run("unreachable tcp origin", func(t *testing.T) {
		re := dialErr("dead.example.test")
		if re.Status != 502 || !strings.Contains(re.Message, "Origin unreachable") || re.RequestID == "" {
			t.Errorf("refusal = %+v, want 502 Origin unreachable with a request ID", re)
		}
		waitFor(t, "the connector's log line", func() bool {
			return strings.Contains(logs.String(), "request_id="+re.RequestID) && strings.Contains(logs.String(), "connection refused")
		})
	})

	t.Run("tcp stream to an http rule", func(t *testing.T) {
		re := dialErr("web.example.test")
		if re.Status != 421 || re.RequestID == "" || !strings.Contains(re.Message, "serves http over HTTP, not TCP") {
			t.Errorf("refusal = %+v, want 421 saying the rule is not a TCP service, with a request ID", re)
		}
		waitFor(t, "the connector's log line", func() bool {
			return strings.Contains(logs.String(), "request_id="+re.RequestID) && strings.Contains(logs.String(), "serves http over HTTP, not TCP")
		})
	})

	t.Run("http request to a tcp rule", func(t *testing.T) {
		resp, err := edgeGet(srv, "tcp.example.test", "/")
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		id := resp.Header.Get(edge.RequestIDHeader)
		if resp.StatusCode != 502 || id == "" || !strings.Contains(body, id) {
			t.Errorf("got %d %q, want 502 naming request ID %q", resp.StatusCode, body, id)
		}
		waitFor(t, "the connector's log line", func() bool {
			return strings.Contains(logs.String(), "request_id="+id) && strings.Contains(logs.String(), "serves tcp, not HTTP")
		})
	})

	t.Run("tunnel offline", func(t *testing.T) {
		re := dialErr("offline.example.test")
		if re.Status != 502 || !strings.Contains(re.Message, "offline") {
			t.Errorf("refusal = %+v, want 502 tunnel offline", re)
		}
	})

	t.Run("unknown hostname", func(t *testing.T) {
		re := dialErr("nobody.example.test")
		if re.Status != 404 || !strings.Contains(re.Message, "nobody.example.test") {
			t.Errorf("refusal = %+v, want 404 naming the hostname", re)
		}
	})

	t.Run("adit access ssh exits with one line", func(t *testing.T) {
		out, code := runAdit(t, nil, "access", "ssh", "--hostname", "dead.example.test", "--edge", edgeAddr)
		out = strings.TrimSpace(out)
		if code != 1 || strings.Count(out, "\n") != 0 || !strings.HasPrefix(out, "adit: ") ||
			!strings.Contains(out, "502") || !strings.Contains(out, "request ID") {
			t.Errorf("adit access ssh to a dead origin: exit %d, output %q; want exit 1 and one line naming 502 and the request ID", code, out)
		}
	})
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freeTCPPort(t)))
}

// TestTCPPortRoute carries a public TCP port of the edge to a tunnel: by
// hostname and by the catch-all rule; removing the route, or deleting the
// tunnel, closes the port.
func TestTCPPortRoute(t *testing.T) {
	srv := startEdge(t, "")
	byName := tunneltest.EchoServer(t, "named:")
	catchAll := tunneltest.EchoServer(t, "catch-all:")
	tun := createTunnel(t, srv, "ports")
	startConnector(t, srv, tun, ingressYAML(t, `
ingress:
  - hostname: echo.example.test
    service: tcp://`+byName+`
  - service: tcp://`+catchAll+`
`))
	ctx := t.Context()
	svc := srv.Service()
	named, anyHost := freeTCPPort(t), freeTCPPort(t)
	if _, err := svc.RouteTCP(ctx, tun.ID, named, "echo.example.test", false); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RouteTCP(ctx, tun.ID, anyHost, "", false); err != nil {
		t.Fatal(err)
	}
	waitPorts(t, srv, named, anyHost)

	dial := func(port int) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	echoCheck(t, dial(named), "hello", "named:hello")
	echoCheck(t, dial(anyHost), "hello", "catch-all:hello")

	// A connection open while its route goes away keeps working.
	open := dial(named)
	if _, err := io.ReadFull(open, make([]byte, len("named:"))); err != nil {
		t.Fatal(err)
	}
	if err := svc.DeleteTCPRoute(ctx, named); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the port to close", func() bool { return !slices.Contains(srv.TCPPorts(), named) })
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(named))); err == nil {
		c.Close()
		t.Errorf("port %d still accepts after its route was removed", named)
	}
	echoCheck(t, open, "still", "still")

	if err := svc.DeleteTunnel(ctx, tun.ID, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the tunnel's port to close", func() bool { return len(srv.TCPPorts()) == 0 })
}

func waitPorts(t testing.TB, srv *edge.Server, ports ...int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("the edge to listen on %v", ports), func() bool {
		open := srv.TCPPorts()
		for _, p := range ports {
			if !slices.Contains(open, p) {
				return false
			}
		}
		return true
	})
}

// TestCLIRouteTCP routes a TCP port with the binary: edge, login, create,
// route tcp, run, connect; then list and delete.
func TestCLIRouteTCP(t *testing.T) {
	home := t.TempDir()
	env := []string{"ADIT_HOME=" + home}
	e := startEdgeProc(t, t.TempDir(), "127.0.0.1:0")
	echo := tunneltest.EchoServer(t, "")
	mustAdit(t, env, e.login...)
	mustAdit(t, env, "tunnel", "create", "tcpweb")
	port := freeTCPPort(t)
	out := mustAdit(t, env, "tunnel", "route", "tcp", "tcpweb", strconv.Itoa(port))
	if !strings.Contains(out, "port "+strconv.Itoa(port)) {
		t.Errorf("route tcp printed %q", out)
	}
	out, code := runAdit(t, env, "tunnel", "route", "tcp", "tcpweb", "70000")
	if code != 1 || !strings.Contains(out, "70000") {
		t.Errorf("route tcp with a bad port: exit %d, %q; want exit 1 naming the port", code, out)
	}
	conn := startAdit(t, env, "tunnel", "run", "--url", "tcp://"+echo, "--ha-connections", "1", "tcpweb")
	conn.waitMatch(t, regexp.MustCompile(`connection registered`))

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var c net.Conn
	waitFor(t, "the edge to listen on the routed port", func() bool {
		var err error
		c, err = net.Dial("tcp", addr)
		return err == nil
	})
	echoCheck(t, c, "over the public port", "over the public port")

	out = mustAdit(t, env, "tunnel", "route", "tcp", "--list")
	if !strings.Contains(out, strconv.Itoa(port)) || !strings.Contains(out, "(catch-all)") {
		t.Errorf("route tcp --list printed %q, want the port and (catch-all)", out)
	}
	mustAdit(t, env, "tunnel", "route", "tcp", "--delete", strconv.Itoa(port))
	waitFor(t, "the port to close", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	out, code = runAdit(t, env, "tunnel", "route", "tcp", "--delete", strconv.Itoa(port))
	if code != 1 || !strings.Contains(out, "no tcp route") {
		t.Errorf("deleting twice: exit %d, %q; want exit 1, no tcp route", code, out)
	}
}

// TestAccessSSH runs real OpenSSH through the tunnel: sshd behind a
// connector, and ssh/scp with `adit access ssh` as their ProxyCommand.
func TestAccessSSH(t *testing.T) {
	sshd := "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		if p, err := exec.LookPath("sshd"); err == nil {
			sshd = p
		} else {
			t.Skip("sshd is not installed (Debian: apt-get install openssh-server openssh-client)")
		}
	}
	for _, tool := range []string{"ssh", "scp", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian: apt-get install openssh-client)", tool)
		}
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		// sshd started by root wants its privilege separation directory.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Skipf("sshd needs /run/sshd: %v", err)
		}
	}

	dir := t.TempDir()
	hostKey, clientKey := filepath.Join(dir, "host_ed25519"), filepath.Join(dir, "client_ed25519")
	for _, k := range []string{hostKey, clientKey} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "adit-e2e", "-f", k).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	pub, err := os.ReadFile(clientKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	port := freeTCPPort(t)
	config := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`ListenAddress 127.0.0.1
Port %d
HostKey %s
AuthorizedKeysFile %s
PidFile %s
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers %s
Subsystem sftp internal-sftp
LogLevel INFO
`, port, hostKey, authKeys, filepath.Join(dir, "sshd.pid"), me.Username)), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &proc{cmd: exec.Command(sshd, "-D", "-e", "-f", config), out: newWatchBuffer(), done: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting sshd: %v", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("sshd output:\n%s", d.out.String())
		}
	})
	d.waitMatch(t, regexp.MustCompile(`Server listening on 127\.0\.0\.1 port `+strconv.Itoa(port)))

	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "ssh", "ssh.example.test")
	startConnector(t, srv, tun, mustIngress(t, "ssh://127.0.0.1:"+strconv.Itoa(port)))

	proxyCmd := fmt.Sprintf("%s access ssh --hostname %%h --edge http://%s", aditBin, srv.HTTPAddr())
	sshOpts := []string{
		"-F", "/dev/null",
		"-o", "ProxyCommand=" + proxyCmd,
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes",
		"-o", "IdentitiesOnly=yes",
		"-o", "LogLevel=ERROR",
		"-i", clientKey,
	}
	run := func(name string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	out := run("ssh", append(sshOpts, "-p", strconv.Itoa(port), me.Username+"@ssh.example.test", "echo", "hello")...)
	if strings.TrimSpace(out) != "hello" {
		t.Errorf("ssh echo hello printed %q, want hello", out)
	}

	src := filepath.Join(dir, "payload")
	data := make([]byte, 50<<20)
	rand.Read(data)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "copied")
	run("scp", append(sshOpts, "-q", "-P", strconv.Itoa(port), src, me.Username+"@ssh.example.test:"+dst)...)
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) || !bytes.Equal(got, data) {
		t.Errorf("scp of 50 MiB: got %d bytes with another checksum, want the same file", len(got))
	}

	// Behind Access (access_oidc_test.go): refused without a token, let
	// through with a service token from the environment.
	testAccessSSHToken(t, srv, append(sshOpts, "-p", strconv.Itoa(port), me.Username+"@ssh.example.test", "echo", "hello"))
}
