package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestClientGoneCancelsOrigin: when the client of a request that the
// origin has not answered yet goes away (a long poll, a silent stream), the
// origin's request is cancelled too, instead of hanging in the connector
// until the origin speaks. Both transports must report it: QUIC by
// STOP_SENDING or a reset, WebSocket by adit's STOP or yamux RST.
func TestClientGoneCancelsOrigin(t *testing.T) { forEachProtocol(t, testClientGoneCancelsOrigin) }

func testClientGoneCancelsOrigin(t *testing.T, proto string) {
	for _, tc := range []struct {
		name    string
		headers bool // the origin sends its response header first
	}{
		{"before the response", false},
		{"during the body", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arrived, cancelled, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
			origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.headers {
					w.WriteHeader(http.StatusOK)
					w.(http.Flusher).Flush()
				}
				close(arrived)
				select {
				case <-r.Context().Done():
					close(cancelled)
				case <-release: // the test failed; let Close finish
				}
			}))
			defer origin.Close()
			defer close(release)
			srv := startEdge(t, "")
			tun := createTunnel(t, srv, "cancel-"+proto, "cancel.test")
			startConnector(t, srv, tun, mustIngress(t, origin.URL), withProtocol(proto))

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", edgeURL(srv, "/poll"), nil)
			req.Host = "cancel.test"
			errc := make(chan error, 1)
			go func() {
				resp, err := edgeClient.Do(req)
				if err == nil {
					_, err = resp.Body.Read(make([]byte, 1))
					resp.Body.Close()
				}
				errc <- err
			}()
			select {
			case <-arrived:
			case <-time.After(20 * time.Second):
				t.Fatal("the request did not reach the origin")
			}
			cancel()
			if err := <-errc; err == nil {
				t.Error("the cancelled request succeeded")
			}
			select {
			case <-cancelled:
			case <-time.After(20 * time.Second):
				t.Fatal("the origin's request was not cancelled after the client went away")
			}
		})
	}
}
