package edge

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/adit-dev/adit/internal/poll"
)

// startTestEdge starts an edge on loopback ports with its own embedded etcd.
func startTestEdge(t *testing.T) *Server {
	t.Helper()
	s, err := Start(context.Background(), Config{
		DataDir:     t.TempDir(),
		HTTPAddr:    "127.0.0.1:0",
		TunnelAddr:  "127.0.0.1:0",
		APIAddr:     "127.0.0.1:0",
		MetricsAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCloseLeavesNothing: Close returns no error and waits for every
// goroutine the edge started (quic-go and etcd wind down a moment later,
// hence the grace).
func TestCloseLeavesNothing(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	s := startTestEdge(t)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	poll.Within(15*time.Second, func() bool { return goleak.Find(ignore) == nil })
	goleak.VerifyNone(t, ignore) // names the goroutines left, if any
}

// TestFailedServerIsReported: a listener that dies after Start is sent on
// Err and named by /ready, which turns 503.
func TestFailedServerIsReported(t *testing.T) {
	s := startTestEdge(t)
	defer s.Close()
	ready := func() (int, string) {
		resp, err := http.Get("http://" + s.MetricsAddr().String() + "/ready")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := ready(); code != http.StatusOK {
		t.Fatalf("/ready before = %d %s, want 200", code, body)
	}
	s.httpLn.Close() // as if the socket failed under the server

	select {
	case err := <-s.Err():
		if !strings.Contains(err.Error(), "http stopped") {
			t.Errorf("Err() = %v, want it to name the http server", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no error on Err() after the public listener died")
	}
	if code, body := ready(); code != http.StatusServiceUnavailable || !strings.Contains(body, "http stopped") {
		t.Errorf("/ready after = %d %q, want 503 naming the http server", code, body)
	}
}
