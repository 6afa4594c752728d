package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestVisitorCancelIs499 (issue 13): requests an HTTP/2 visitor resets
// while the origin has not answered yet are 499 in the edge's and the
// connector's metrics, never 502 or an origin error, and the connector
// logs them once per interval, not once each.
func TestVisitorCancelIs499(t *testing.T) { forEachProtocol(t, testVisitorCancelIs499) }

func testVisitorCancelIs499(t *testing.T, proto string) {
	const n = 30
	var arrived sync.WaitGroup
	arrived.Add(n)
	release := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer origin.Close()
	defer close(release)
	logs := &syncBuffer{}
	srv := startEdgeLogged(t, logs)
	tun := createTunnel(t, srv, "cancel-"+proto, "cancel.test")
	conn := startConnector(t, srv, tun, mustIngress(t, origin.URL), withProtocol(proto), withLogBuffer(logs))

	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: protocols}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	var done sync.WaitGroup
	for range n {
		done.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", edgeURL(srv, "/poll"), nil)
			req.Host = "cancel.test"
			if resp, err := client.Do(req); err == nil {
				t.Errorf("a request the visitor cancelled got %d", resp.StatusCode)
				resp.Body.Close()
			}
		})
	}
	waited := make(chan struct{})
	go func() { arrived.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatal("the requests did not all reach the origin")
	}
	cancel() // one RST_STREAM per request
	done.Wait()

	waitFor(t, "the edge to count 499s", func() bool {
		return gathered(t, srv.Metrics(), "adit_edge_requests_total", "code", "499") == n
	})
	waitFor(t, "the connector to count 499s", func() bool {
		return gathered(t, conn.Metrics(), "adit_connector_requests_total", "code", "499") == n
	})
	if got := gathered(t, srv.Metrics(), "adit_edge_requests_total", "code", "502"); got > 0 {
		t.Errorf("edge: %v requests counted 502", got)
	}
	if got := gathered(t, conn.Metrics(), "adit_connector_origin_errors_total"); got != 0 {
		t.Errorf("connector: %v origin errors for cancelled requests, want 0", got)
	}
	if got := gathered(t, conn.Metrics(), "adit_connector_requests_total", "code", "502"); got > 0 {
		t.Errorf("connector: %v streams counted 502", got)
	}
	out := logs.String()
	if c := strings.Count(out, `msg="request cancelled: the edge's client went away" component=connector`); c < 1 || c > 2 {
		t.Errorf("connector log lines for %d cancelled requests: got %d, want 1 (2 at an interval's edge)", n, c)
	}
	for _, msg := range []string{"origin unreachable", "tunnel stream failed", "response body from origin broke off"} {
		if strings.Contains(out, `msg="`+msg+`"`) {
			t.Errorf("log has %q for a cancelled request", msg)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("an error logged for a cancelled request: %s", line)
		}
	}
}
