package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

// soakOrigin answers GET with a short text, POST with the body's length,
// and /ws with a WebSocket echo.
func soakOrigin(t testing.TB) *httptest.Server {
	t.Helper()
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				typ, msg, err := c.Read(r.Context())
				if err != nil {
					return
				}
				if err := c.Write(r.Context(), typ, msg); err != nil {
					return
				}
			}
		}
		n, _ := io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodPost {
			fmt.Fprintf(w, "got %d", n)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(o.Close)
	return o
}

// soakClient is a client of its own, so that its idle connections can be
// closed without touching the other tests'.
func soakClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
}

// exercise sends HTTP requests (GET and POST) and WebSocket sessions
// through host on srvAddr until n requests are done or the deadline
// passes. It returns how many requests and sessions succeeded, and the
// first errors.
func exercise(ctx context.Context, client *http.Client, srvAddr, host string, n int64, httpWorkers, wsWorkers int) (reqs, sessions int64, errs []string) {
	var mu sync.Mutex
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) < 10 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	var done, okReqs, okSessions atomic.Int64
	body := bytes.Repeat([]byte("p"), 4096)
	var wg sync.WaitGroup
	for w := range httpWorkers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && done.Add(1) <= n; i++ {
				method, rd, want := "GET", io.Reader(nil), "ok"
				if (i+w)%3 == 0 {
					method, rd, want = "POST", bytes.NewReader(body), "got 4096"
				}
				req, _ := http.NewRequestWithContext(ctx, method, "http://"+srvAddr+"/", rd)
				req.Host = host
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						fail("%s: %v", method, err)
					}
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || string(b) != want {
					fail("%s: %d %q %v", method, resp.StatusCode, b, err)
					continue
				}
				okReqs.Add(1)
			}
		})
	}
	for range wsWorkers {
		wg.Go(func() {
			for ctx.Err() == nil && done.Load() < n {
				c, _, err := websocket.Dial(ctx, "ws://"+srvAddr+"/ws", &websocket.DialOptions{Host: host, HTTPClient: client})
				if err != nil {
					if ctx.Err() == nil {
						fail("websocket dial: %v", err)
					}
					continue
				}
				ok := true
				for j := range 5 {
					msg := []byte(fmt.Sprintf("message %d", j))
					if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
						ok = false
						break
					}
					if _, got, err := c.Read(ctx); err != nil || !bytes.Equal(got, msg) {
						ok = false
						break
					}
				}
				if ok && c.Close(websocket.StatusNormalClosure, "") == nil {
					okSessions.Add(1)
				} else {
					c.CloseNow()
					if ctx.Err() == nil {
						fail("websocket session broke")
					}
				}
			}
		})
	}
	wg.Wait()
	return okReqs.Load(), okSessions.Load(), errs
}

// TestNoGoroutineLeaks runs an edge and a connector in this process,
// sends HTTP requests and WebSocket sessions through them, shuts both
// down, and checks that every goroutine they started is gone.
func TestNoGoroutineLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		// Runs last, after the edge, connector and origin are closed.
		// quic-go keeps a closed connection's IDs for a few PTOs, and
		// etcd winds down asynchronously: give them time.
		waitWithin(10*time.Second, func() bool { return goleak.Find(ignore) == nil })
		goleak.VerifyNone(t, ignore) // names the goroutines left, if any
	})
	origin := soakOrigin(t)
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "leaks", "leaks.test")
	startConnector(t, srv, tun, mustIngress(t, origin.URL))
	client := soakClient()
	t.Cleanup(client.CloseIdleConnections)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reqs, sessions, errs := exercise(ctx, client, srv.HTTPAddr().String(), "leaks.test", 300, 8, 2)
	for _, e := range errs {
		t.Error(e)
	}
	if reqs < 300 || sessions == 0 {
		t.Errorf("got %d requests and %d WebSocket sessions through, want 300 and some", reqs, sessions)
	}
	// Requests the client gives up on must not leave anything behind.
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+srv.HTTPAddr().String()+"/?slow", nil)
		req.Host = "leaks.test"
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
		cancel()
	}
}

// TestSoak sends 20,000 requests mixed with WebSocket sessions through an
// in-process edge and connector (bounded to 20s), then checks that
// goroutines and heap come back near where they started.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test: skipped with -short")
	}
	origin := soakOrigin(t)
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "soak", "soak.test")
	startConnector(t, srv, tun, mustIngress(t, origin.URL))
	client := soakClient()
	defer client.CloseIdleConnections()
	addr := srv.HTTPAddr().String()

	// Warm up: pools, buffers and lazily started goroutines.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	exercise(ctx, client, addr, "soak.test", 500, 16, 2)
	cancel()
	client.CloseIdleConnections()
	goroutines0, heap0 := settle(t)

	start := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	reqs, sessions, errs := exercise(ctx, client, addr, "soak.test", 20000, 16, 4)
	cancel()
	took := time.Since(start)
	for _, e := range errs {
		t.Error(e)
	}
	client.CloseIdleConnections()
	goroutines1, heap1 := settle(t)
	t.Logf("soak: %d requests and %d WebSocket sessions in %v; goroutines %d → %d, heap in use %.1f → %.1f MiB",
		reqs, sessions, took.Round(time.Millisecond), goroutines0, goroutines1, float64(heap0)/(1<<20), float64(heap1)/(1<<20))
	if reqs < 2000 {
		t.Errorf("only %d requests went through in %v", reqs, took)
	}
	if goroutines1 > goroutines0+20 {
		var b strings.Builder
		for _, g := range strings.Split(allStacks(), "\n\n") {
			if !strings.Contains(g, "testing.") {
				b.WriteString(g + "\n\n")
			}
		}
		t.Errorf("goroutines did not come back: %d before the soak, %d after (allowed: +20); they are:\n%.20000s", goroutines0, goroutines1, b.String())
	}
	if heap1 > heap0+32<<20 {
		t.Errorf("heap in use did not come back: %.1f MiB before the soak, %.1f MiB after (allowed: +32 MiB)", float64(heap0)/(1<<20), float64(heap1)/(1<<20))
	}
}

// settle waits for goroutines to wind down (idle connections closing) and
// returns the goroutine count and the heap in use after a GC.
func settle(t testing.TB) (int, uint64) {
	t.Helper()
	// The count goes down as connections close; take it once it stops
	// going down.
	last, stable := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(5 * time.Second); stable < 5 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond) // the sampling interval: a count stable over 250ms
		n := runtime.NumGoroutine()
		if n >= last {
			stable++
		} else {
			stable = 0
		}
		last = n
	}
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), ms.HeapInuse
}

func allStacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
