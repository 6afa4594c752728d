package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// What an idle WebSocket costs the edge and the connector (issue 5: under
// 20 KiB of RSS per connection on each side). Goroutines are most of it,
// so their number is asserted: at most two per upgraded connection on each
// side. Set ADIT_WSMEM=N to also log the heap and stack growth for N
// connections and write a heap profile (ADIT_WSMEM_PROFILE=dir).

// maxGoroutinesPerUpgrade is the budget of each side per idle upgraded
// connection: one goroutine per direction.
const maxGoroutinesPerUpgrade = 2

// goroutineSlack is how many goroutines a side may start while n
// connections open that are not per connection (a server's connection
// that is still winding down, a pool's worker): the count is over 40
// connections, so one more goroutine per connection is 40 more.
const goroutineSlack = 4

func TestIdleUpgradeGoroutines(t *testing.T) { forEachProtocol(t, testIdleUpgradeGoroutines) }

func testIdleUpgradeGoroutines(t *testing.T, proto string) {
	const n = 40
	origin := startRawUpgradeOrigin(t)
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "idle-ws", "idle.test")
	startConnector(t, srv, tun, mustIngress(t, "http://"+origin.Addr().String()), withProtocol(proto))

	// One upgrade first, kept open, so that lazily started goroutines (a
	// transport's first stream, pools) are not charged to the connections
	// measured.
	warm := openUpgrades(t, srv.HTTPAddr().String(), "idle.test", 1)
	defer closeAllConns(warm)
	before := settledGoroutines(goroutinesBySide(), 0)
	conns := openUpgrades(t, srv.HTTPAddr().String(), "idle.test", n)
	defer closeAllConns(conns)

	got := settledGoroutines(before, n)
	for _, side := range []string{"edge", "connector", "origin", "other"} {
		added := got[side] - before[side]
		t.Logf("%s: %d → %d goroutines: %.2f per upgraded connection", side, before[side], got[side], float64(added)/n)
		switch {
		case (side == "edge" || side == "connector") && added > maxGoroutinesPerUpgrade*n+goroutineSlack:
			t.Errorf("%s: got %d more goroutines for %d idle upgraded connections, want at most %d per connection (+%d)\n%s",
				side, added, n, maxGoroutinesPerUpgrade, goroutineSlack, sideStacks(side))
		case side == "other" && added > goroutineSlack:
			// Neither side's code on the stack (a transport's own
			// goroutine per stream, say): still a cost per connection.
			t.Errorf("other goroutines: got %d more for %d idle upgraded connections, want none per connection\n%s", added, n, sideStacks(side))
		}
	}
	// Everything still works after the count.
	echoOnce(t, conns[0], "still alive")
	echoOnce(t, conns[n-1], "still alive")
}

// settledGoroutines counts goroutines by side once those that only set n
// new connections up (a dial, a handshake) have ended: until each side is
// within its budget over before, for at most 10s (with n = 0, until the
// count is back to before, give or take the slack). There is no event to
// wait on.
func settledGoroutines(before map[string]int, n int) map[string]int {
	var got map[string]int
	waitWithin(10*time.Second, func() bool {
		got = goroutinesBySide()
		ok := got["other"]-before["other"] <= goroutineSlack
		for _, side := range []string{"edge", "connector"} {
			if got[side]-before[side] > maxGoroutinesPerUpgrade*n+goroutineSlack {
				ok = false
			}
		}
		return ok
	})
	return got // the caller judges it, settled or not
}

// TestUpgradedConnectionsEndWithTheEdge: the edge does not track hijacked
// connections, but closing it closes its tunnel connections, which ends
// every pipe and so closes the clients' connections.
func TestUpgradedConnectionsEndWithTheEdge(t *testing.T) {
	origin := startRawUpgradeOrigin(t)
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "idle-ws", "idle.test")
	startConnector(t, srv, tun, mustIngress(t, "http://"+origin.Addr().String()))
	conns := openUpgrades(t, srv.HTTPAddr().String(), "idle.test", 3)
	defer closeAllConns(conns)
	closed := make(chan error, len(conns))
	for _, c := range conns {
		go func() {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, err := c.Read(make([]byte, 1))
			closed <- err
		}()
	}
	srv.Close()
	for range conns {
		if err := <-closed; err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client read after the edge closed: got %v, want io.EOF or a reset", err)
		}
	}
}

// TestIdleUpgradeMemory logs what N idle upgraded connections cost the
// process (edge and connector together, in-process); it runs only with
// ADIT_WSMEM=N.
func TestIdleUpgradeMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ADIT_WSMEM"))
	if n <= 0 {
		t.Skip("set ADIT_WSMEM=N to measure N idle upgraded connections")
	}
	if os.Getenv("ADIT_WSMEM_PROFILE") != "" {
		defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1 // every allocation, for an exact heap profile
	}
	forEachProtocol(t, func(t *testing.T, proto string) {
		origin := startRawUpgradeOrigin(t)
		srv := startEdge(t, "")
		tun := createTunnel(t, srv, "idle-ws", "idle.test")
		startConnector(t, srv, tun, mustIngress(t, "http://"+origin.Addr().String()), withProtocol(proto))
		closeAllConns(openUpgrades(t, srv.HTTPAddr().String(), "idle.test", 50))

		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m0)
		g0 := goroutinesBySide()
		conns := openUpgrades(t, srv.HTTPAddr().String(), "idle.test", n)
		defer closeAllConns(conns)
		g1 := settledGoroutines(g0, n)
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		per := func(a, b uint64) float64 { return (float64(b) - float64(a)) / 1024 / float64(n) }
		ss := []metrics.Sample{{Name: "/gc/stack/starting-size:bytes"}}
		metrics.Read(ss)
		t.Logf("%s: per connection (edge, connector, origin and client together): live heap %.1f KiB, stacks %.1f KiB (new goroutines start with %d bytes); goroutines: edge %.2f, connector %.2f, origin %.2f, other %.2f",
			proto, per(m0.HeapAlloc, m1.HeapAlloc), per(m0.StackInuse, m1.StackInuse), ss[0].Value.Uint64(),
			float64(g1["edge"]-g0["edge"])/float64(n), float64(g1["connector"]-g0["connector"])/float64(n),
			float64(g1["origin"]-g0["origin"])/float64(n), float64(g1["other"]-g0["other"])/float64(n))
		if dir := os.Getenv("ADIT_WSMEM_PROFILE"); dir != "" {
			f, err := os.Create(filepath.Join(dir, "heap-"+proto+".pprof"))
			if err != nil {
				t.Fatal(err)
			}
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
			f, err = os.Create(filepath.Join(dir, "goroutines-"+proto+".txt"))
			if err != nil {
				t.Fatal(err)
			}
			pprof.Lookup("goroutine").WriteTo(f, 1)
			f.Close()
		}
	})
}

// startRawUpgradeOrigin is an origin that answers every request with a 101
// and then echoes bytes until the client closes: one goroutine per
// connection, no net/http server, so that its goroutines are easy to tell
// apart from the edge's and the connector's.
func startRawUpgradeOrigin(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]struct{}{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					c.Close()
					mu.Lock()
					delete(open, c)
					mu.Unlock()
				}()
				rawOriginServe(c)
			})
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln
}

func rawOriginServe(c net.Conn) {
	br := bufio.NewReaderSize(c, 1024)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if !strings.EqualFold(req.Header.Get("Connection"), "upgrade") {
		io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	if _, err := fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", req.Header.Get("Upgrade")); err != nil {
		return
	}
	io.Copy(c, br)
}

// openUpgrades opens n upgraded connections through the edge, each checked
// with one echo.
func openUpgrades(t testing.TB, addr, host string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			closeAllConns(conns)
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", host)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			closeAllConns(conns)
			t.Fatalf("connection %d: reading the answer: %v", i, err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			closeAllConns(conns)
			t.Fatalf("connection %d: got status %d (%s), want 101", i, resp.StatusCode, b)
		}
		if br.Buffered() > 0 {
			closeAllConns(conns)
			t.Fatalf("connection %d: %d bytes after the 101", i, br.Buffered())
		}
		echoOnce(t, c, "hello "+strconv.Itoa(i))
		c.SetDeadline(time.Time{})
	}
	return conns
}

func echoOnce(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("writing: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("echo: got %q, want %q", got, msg)
	}
}

func closeAllConns(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// goroutineStacks returns the stacks of all goroutines, one per element.
func goroutineStacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(string(buf[:n]), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// goroutineSide says whose a goroutine is by the code on its stack and the
// code that started it.
func goroutineSide(stack string) string {
	switch {
	case strings.Contains(stack, "adit-dev/adit/edge."), strings.Contains(stack, "net/http.(*conn).serve"),
		strings.Contains(stack, "net/http/httputil."):
		return "edge"
	case strings.Contains(stack, "adit-dev/adit/connector."), strings.Contains(stack, "adit-dev/adit/origin."),
		strings.Contains(stack, "net/http.(*persistConn)"), strings.Contains(stack, "net/http.(*Transport)"):
		return "connector"
	case strings.Contains(stack, "e2e.rawOriginServe"), strings.Contains(stack, "e2e.startRawUpgradeOrigin"):
		return "origin"
	}
	return "other"
}

func goroutinesBySide() map[string]int {
	m := map[string]int{}
	for _, s := range goroutineStacks() {
		m[goroutineSide(s)]++
	}
	return m
}

// sideStacks is the goroutine dump of one side, for a failure message:
// each distinct stack once, with its count.
func sideStacks(side string) string {
	counts := map[string]int{}
	var order []string
	for _, s := range goroutineStacks() {
		if goroutineSide(s) != side {
			continue
		}
		_, body, _ := strings.Cut(s, "\n") // drop "goroutine N [state]:"
		if counts[body] == 0 {
			order = append(order, body)
		}
		counts[body]++
	}
	var b bytes.Buffer
	for _, s := range order {
		fmt.Fprintf(&b, "%d ×\n%s\n\n", counts[s], s)
	}
	return b.String()
}
