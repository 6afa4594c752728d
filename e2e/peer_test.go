package e2e

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/edge/edgepeer"
	"github.com/adit-dev/adit/internal/pki"
	"github.com/adit-dev/adit/internal/store"
	"github.com/adit-dev/adit/tunnel"
	"github.com/adit-dev/adit/tunnel/tunnelquic"
	"github.com/adit-dev/adit/tunnel/tunneltest"
)

// A fleet of in-process edges for the peer link's tests: one etcd, one CA,
// each edge on its own loopback address (127.0.0.2, .3, ...).
type fleet struct {
	st           *store.Store
	caPEM, caKey []byte
	edges        []*edge.Server
}

// startFleet starts n edges named edge-a, edge-b, ... sharing an embedded
// etcd and a CA, and waits until each has a peer link to every other.
func startFleet(t *testing.T, n int) *fleet {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fleet{st: st}
	f.caPEM, f.caKey, err = pki.NewCA("adit fleet test CA")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		f.edges = append(f.edges, f.startEdge(t, i))
	}
	f.waitLinks(t)
	return f
}

// fleetDataDir is a new edge data directory holding the fleet's CA, as
// `adit edge --join` leaves it.
func fleetDataDir(t *testing.T, caPEM, caKey []byte) string {
	t.Helper()
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tlsDir, pki.CACertFile), caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tlsDir, pki.CAKeyFile), caKey, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// deadTunnelAddr is the tunnel address edge-a advertises: nothing listens
// there, so a connector that learns the fleet's edges never keeps a
// connection on edge-a, and what edge-a serves it forwards.
const deadTunnelAddr = "127.0.0.2:1"

// startEdge starts edge i of the fleet on 127.0.0.(i+2).
func (f *fleet) startEdge(t *testing.T, i int) *edge.Server {
	t.Helper()
	host := fmt.Sprintf("127.0.0.%d", i+2)
	cfg := edge.Config{
		DataDir:       fleetDataDir(t, f.caPEM, f.caKey),
		NodeName:      fmt.Sprintf("edge-%c", 'a'+i),
		HTTPAddr:      host + ":0",
		TunnelAddr:    host + ":0",
		APIAddr:       host + ":0",
		PublicNames:   []string{host},
		EtcdEndpoints: f.st.Endpoints(),
		Logger:        testLogger(t).With("side", fmt.Sprintf("edge-%c", 'a'+i)),
	}
	if i == 0 {
		cfg.AdvertiseAddr = deadTunnelAddr
	}
	srv, err := edge.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("starting edge %d: %v", i, err)
	}
	t.Cleanup(func() { srv.Close() })
	f.register(t, srv)
	return srv
}

// register puts the edge's fleet record (with its peer address) if the
// edge has not (a record the edge writes itself is left alone).
func (f *fleet) register(t *testing.T, srv *edge.Server) {
	t.Helper()
	ctx := context.Background()
	key := store.EdgeKey(srv.Node())
	resp, err := f.st.Client().Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) > 0 {
		var e control.EdgeNode
		if json.Unmarshal(resp.Kvs[0].Value, &e) == nil && e.PeerAddr != "" {
			return
		}
	}
	b, _ := json.Marshal(control.EdgeNode{Name: srv.Node(), PeerAddr: srv.PeerAddr(), Health: control.EdgeHealthOK})
	if _, err := f.st.Client().Put(ctx, key, string(b)); err != nil {
		t.Fatal(err)
	}
}

// waitLinks waits until every edge has a peer link to every other.
func (f *fleet) waitLinks(t *testing.T) {
	t.Helper()
	waitFor(t, "the peer links", func() bool {
		for _, e := range f.edges {
			if len(e.PeerLinks()) != len(f.edges)-1 {
				return false
			}
		}
		return true
	})
}

// TestPeerForward: a tunnel connected only to edge B is reached through
// edge A: HTTP (with and without a body), WebSocket, an `adit access` TCP
// stream and a public TCP port, each keeping the visitor's address and
// the request ID.
func TestPeerForward(t *testing.T) {
	f := startFleet(t, 2)
	a, b := f.edges[0], f.edges[1]
	echo := tunneltest.EchoServer(t, "echo:")
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			wsEcho(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s body=%q xff=%s real=%s", r.Method, r.URL.Path, body, r.Header.Get("X-Forwarded-For"), r.Header.Get("Cf-Connecting-Ip"))
	}))
	t.Cleanup(origin.Close)
	tun := createTunnel(t, a, "held-by-b", "app.example.test", "tcp.example.test")
	b.Sync(context.Background())
	var connLog syncBuffer
	startConnector(t, b, tun, ingressYAML(t, `
ingress:
  - hostname: tcp.example.test
    service: tcp://`+echo+`
  - service: `+origin.URL+`
`), withLogBuffer(&connLog))
	a.Sync(context.Background())
	if a.Connections() != 0 {
		t.Fatalf("edge A holds %d connections, want none", a.Connections())
	}

	t.Run("http", func(t *testing.T) {
		resp, err := edgeGet(a, "app.example.test", "/hello")
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		want := "GET /hello body=\"\" xff=127.0.0.1 real=127.0.0.1"
		if resp.StatusCode != 200 || body != want {
			t.Fatalf("via A: %d %q, want 200 %q", resp.StatusCode, body, want)
		}
		// The connector logs the request under the ID A gave it.
		id := resp.Header.Get(edge.RequestIDHeader)
		if len(id) != 16 {
			t.Fatalf("request ID %q, want A's 16 hex digits", id)
		}
		waitFor(t, "the connector to log the request under A's ID", func() bool {
			return strings.Contains(connLog.String(), "request_id="+id)
		})
	})
	t.Run("http with a body", func(t *testing.T) {
		req, _ := http.NewRequest("POST", edgeURL(a, "/post"), strings.NewReader(strings.Repeat("x", 300<<10)))
		req.Host = "app.example.test"
		resp, err := edgeClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "POST /post body=\"xxx") || len(body) < 300<<10 {
			t.Fatalf("via A: %d %.60q (%d bytes)", resp.StatusCode, body, len(body))
		}
	})
	t.Run("websocket", func(t *testing.T) { checkWSEcho(t, a.HTTPAddr().String(), "app.example.test", 3) })
	t.Run("access tcp", func(t *testing.T) {
		p := startAdit(t, nil, "access", "tcp", "--hostname", "tcp.example.test", "--url", "127.0.0.1:0", "--edge", "http://"+a.HTTPAddr().String())
		addr := p.waitMatch(t, reListening)[1]
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		msg := strings.Repeat("peer", 64<<10)
		echoCheck(t, c, msg, "echo:"+msg)
	})
	t.Run("tcp port", func(t *testing.T) {
		port := freeTCPPortOn(t, "127.0.0.2", "127.0.0.3")
		if _, err := a.Service().RouteTCP(context.Background(), tun.ID, port, "tcp.example.test", false); err != nil {
			t.Fatal(err)
		}
		waitPorts(t, a, port)
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		echoCheck(t, c, "via a port", "echo:via a port")
	})
}

// freeTCPPortOn returns a TCP port that was free on every host a moment ago.
func freeTCPPortOn(t *testing.T, hosts ...string) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", hosts[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		free := true
		for _, h := range hosts[1:] {
			l2, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(port)))
			if err != nil {
				free = false
				break
			}
			l2.Close()
		}
		ln.Close()
		if free {
			return port
		}
	}
	t.Fatal("no port free on every host")
	return 0
}

// TestPeerNoLoop: the connection records say the other edge holds the
// tunnel, but neither does: each edge forwards once, the other refuses,
// and the visitor gets a clear 502 rather than a loop.
func TestPeerNoLoop(t *testing.T) {
	f := startFleet(t, 2)
	a, b := f.edges[0], f.edges[1]
	tun := createTunnel(t, a, "nowhere", "nowhere.example.test")
	b.Sync(context.Background())
	ctx := context.Background()
	for _, node := range []string{a.Node(), b.Node()} {
		c := control.Connection{ID: uuid.NewString(), TunnelID: tun.ID, EdgeNode: node, Protocol: "quic", Since: time.Now()}
		val, _ := json.Marshal(c)
		if _, err := f.st.Client().Put(ctx, store.ConnectionKey(tun.ID, c.ID), string(val)); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range f.edges {
		e.Sync(ctx)
	}
	for _, e := range f.edges {
		for _, method := range []string{"GET", "POST"} {
			req, _ := http.NewRequest(method, edgeURL(e, "/"), strings.NewReader("body"))
			req.Host = "nowhere.example.test"
			resp, err := edgeClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "Tunnel offline") {
				t.Errorf("%s %s via %s: %d %.200q, want 502 Tunnel offline", method, req.Host, e.Node(), resp.StatusCode, body)
			}
		}
	}
}

// TestPeerCertificates: the peer link takes only an edge's peer
// certificate of the fleet's CA: none, the edge's server certificate (what
// a connector or API client sees), another CA's peer certificate, and a
// peer certificate of an edge with no live record are refused.
func TestPeerCertificates(t *testing.T) {
	f := startFleet(t, 1)
	a := f.edges[0]
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(f.caPEM)
	pair := func(certPEM, keyPEM []byte) []tls.Certificate {
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{c}
	}
	server, serverKey, err := pki.IssueServerCert(f.caPEM, f.caKey, []string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherCA, otherKey, _ := pki.NewCA("not the fleet")
	foreign, foreignKey, _ := pki.IssuePeerCert(otherCA, otherKey, "edge-z", time.Hour)
	stranger, strangerKey, _ := pki.IssuePeerCert(f.caPEM, f.caKey, "edge-z", time.Hour)
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
	}{
		{"no certificate", nil},
		{"the edge's server certificate", pair(server, serverKey)},
		{"another CA's peer certificate", pair(foreign, foreignKey)},
		{"a peer certificate of no live edge", pair(stranger, strangerKey)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			conf := &tls.Config{Certificates: tc.certs, InsecureSkipVerify: true}
			c, err := tunnelquic.Dial(ctx, a.PeerAddr(), conf, tunnelquic.Config{})
			if err != nil {
				return // refused in the handshake
			}
			defer c.Close(0, "")
			// TLS 1.3: the client's certificate is checked after the
			// client's handshake is done; the refusal ends the connection.
			s, err := c.OpenStream(ctx)
			if err == nil {
				tunnel.WriteMessage(s, &tunnel.PeerForward{TunnelID: uuid.NewString(), EntryNode: "edge-z"})
				_, err = s.Read(make([]byte, 1))
			}
			select {
			case <-c.Done():
			case <-ctx.Done():
				t.Fatalf("the connection is still up (read: %v), want it refused", err)
			}
		})
	}
	if len(a.PeerLinks()) != 0 {
		t.Errorf("links %v, want none", a.PeerLinks())
	}
}

// TestPeerEdgeGone: when edge B closes, its connection records go with it,
// and edge A, which forwarded to B, answers 502 Tunnel offline.
func TestPeerEdgeGone(t *testing.T) {
	f := startFleet(t, 2)
	a, b := f.edges[0], f.edges[1]
	tun := createTunnel(t, a, "on-b", "onb.example.test")
	b.Sync(context.Background())
	startConnector(t, b, tun, mustIngress(t, helloOrigin(t, "from b").URL), func(c *connector.Config) { c.GracePeriod = 0 })
	waitFor(t, "A to reach the tunnel through B", func() bool {
		code, body := getVia(a.HTTPAddr().String(), "onb.example.test")
		return code == 200 && body == "from b"
	})
	b.Close()
	waitFor(t, "B's connection records to go", func() bool {
		resp, err := f.st.Client().Get(context.Background(), store.TunnelConnectionsPrefix(tun.ID), clientv3.WithPrefix())
		return err == nil && len(resp.Kvs) == 0
	})
	waitFor(t, "A to answer 502", func() bool {
		code, body := getVia(a.HTTPAddr().String(), "onb.example.test")
		return code == http.StatusBadGateway && strings.Contains(body, "Tunnel offline")
	})
	if slices.ContainsFunc(a.PeerLinks(), func(l edgepeer.LinkInfo) bool { return l.Node == b.Node() }) {
		t.Errorf("A still has a link to B: %v", a.PeerLinks())
	}
}

var rePeerAddr = regexp.MustCompile(`peer link\s+(\S+) \(udp`)

// TestPeerEdgeKilled: two `adit edge` processes on one etcd and one CA; a
// tunnel connected only to B is reached through A; B is killed with
// SIGKILL: its connection records vanish within its lease TTL (2s here),
// and A answers 502 Tunnel offline.
func TestPeerEdgeKilled(t *testing.T) {
	st, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	caPEM, caKey, err := pki.NewCA("adit fleet test CA")
	if err != nil {
		t.Fatal(err)
	}
	start := func(name, host string, extra ...string) (p *proc, httpAddr, tunnelAddr string) {
		args := append([]string{"edge", "--data-dir", fleetDataDir(t, caPEM, caKey), "--node-name", name,
			"--etcd-endpoints", st.Endpoints()[0], "--lease-ttl", "2s",
			"--http-addr", host + ":0", "--tunnel-addr", host + ":0", "--api-addr", host + ":0"}, extra...)
		p = startAdit(t, nil, args...)
		httpAddr = p.waitMatch(t, reHTTPAddr)[1]
		tunnelAddr = p.waitMatch(t, reTunnelAddr)[1]
		if peer := p.waitMatch(t, rePeerAddr)[1]; !strings.HasPrefix(peer, host+":") {
			t.Fatalf("%s: peer link at %s, want on %s", name, peer, host)
		}
		return p, httpAddr, tunnelAddr
	}
	_, aHTTP, _ := start("edge-a", "127.0.0.2", "--advertise", deadTunnelAddr)
	b, _, bTunnel := start("edge-b", "127.0.0.3")

	ctx := context.Background()
	svc := controlserver.NewService(st.Client(), control.EdgeInfo{}, nil)
	secret := make([]byte, 32)
	rand.Read(secret)
	tun, err := svc.CreateTunnel(ctx, "on-b", secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RouteDNS(ctx, tun.ID, "killed.example.test", false); err != nil {
		t.Fatal(err)
	}
	runConnector(t, connector.Config{
		TunnelID:      tun.ID,
		Secret:        secret,
		EdgeAddrs:     []string{bTunnel},
		EdgeCA:        caPEM,
		ServerName:    "localhost",
		Ingress:       mustIngress(t, helloOrigin(t, "from b").URL),
		HAConnections: 2,
		Logger:        testLogger(t).With("side", "connector"),
	})
	waitFor(t, "A to reach the tunnel through B", func() bool {
		code, body := getVia(aHTTP, "killed.example.test")
		return code == 200 && body == "from b"
	})

	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitFor(t, "B's connection records to go with its lease", func() bool {
		resp, err := st.Client().Get(ctx, store.TunnelConnectionsPrefix(tun.ID), clientv3.WithPrefix())
		return err == nil && len(resp.Kvs) == 0
	})
	t.Logf("B's connection records were gone %s after SIGKILL", time.Since(killed).Round(100*time.Millisecond))
	waitFor(t, "A to answer 502", func() bool {
		code, body := getVia(aHTTP, "killed.example.test")
		return code == http.StatusBadGateway && strings.Contains(body, "Tunnel offline")
	})
}

// TestPeerAccess: Access decides at the edge the visitor reached, and the
// identity it vouched for reaches the origin through the forward: a
// service token's request through edge A gets to the tunnel held by B with
// A's signed assertion; one without a token is refused at A.
func TestPeerAccess(t *testing.T) {
	f := startFleet(t, 2)
	a, b := f.edges[0], f.edges[1]
	ctx := context.Background()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "assertion=%t", r.Header.Get("Cf-Access-Jwt-Assertion") != "")
	}))
	t.Cleanup(origin.Close)
	tun := createTunnel(t, a, "guarded", "guarded.example.test")
	api := accessAPI(t, a)
	tok, err := api.CreateAccessServiceToken(ctx, control.CreateServiceTokenRequest{Name: "robot"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.CreateAccessApp(ctx, control.AccessApp{Name: "guarded", Domain: "guarded.example.test",
		Policies: []control.AccessPolicy{{Action: "service_auth", Include: []string{"service_token:robot"}}}}); err != nil {
		t.Fatal(err)
	}
	b.Sync(ctx)
	startConnector(t, b, tun, mustIngress(t, origin.URL))
	a.Sync(ctx)
	get := func(hdr ...string) (int, string) {
		req, _ := http.NewRequest("GET", edgeURL(a, "/"), nil)
		req.Host = "guarded.example.test"
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := edgeClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readAll(t, resp)
	}
	waitFor(t, "A to let the service token through to B's tunnel", func() bool {
		code, body := get("Cf-Access-Client-Id", tok.ClientID, "Cf-Access-Client-Secret", tok.ClientSecret)
		return code == 200 && body == "assertion=true"
	})
	if code, body := get(); code == 200 {
		t.Errorf("no token through A: %d %q, want a refusal at A", code, body)
	}
	if a.Connections() != 0 {
		t.Errorf("edge A holds %d connections, want none (the requests were to be forwarded)", a.Connections())
	}
}
