package edge

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/poll"
)

// fixedRouter routes every host to one tunnel.
type fixedRouter string

func (r fixedRouter) Route(string) (string, bool) { return string(r), true }

// TestRequestLogSlowSubscriber: a subscriber that never reads costs the
// publisher nothing (it never blocks); the entries past its buffer are
// dropped and counted, and the stream tells the reader how many, after
// the entries it did keep.
func TestRequestLogSlowSubscriber(t *testing.T) {
	l := newRequestLog("edge-1", fixedRouter("t1"), nil)
	s := &tailSub{tunnelID: "t1", hosts: map[string]bool{}, ch: make(chan control.RequestLogEntry, tailBuffer), wake: make(chan struct{}, 1)}
	if !l.subscribe(s) {
		t.Fatal("subscribe refused")
	}
	req := httptest.NewRequest("GET", "http://app.example.com/x", nil)
	h := http.Header{RequestIDHeader: {"r1"}}
	const n = 10_000
	done := make(chan struct{})
	go func() {
		for range n {
			l.finished(req, 200, time.Now(), h)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("publishing to a subscriber that does not read blocked")
	}
	if got := s.dropped.Load(); got != n-tailBuffer {
		t.Errorf("dropped = %d, want %d", got, n-tailBuffer)
	}

	ctx, cancel := context.WithCancel(context.Background())
	rec := httptest.NewRecorder()
	streamDone := make(chan struct{})
	go func() {
		l.stream(rec, httptest.NewRequest("GET", "/", nil).WithContext(ctx), s)
		close(streamDone)
	}()
	poll.Until(t, "the stream to take the buffered entries", func() bool { return s.dropped.Load() == 0 && len(s.ch) == 0 })
	cancel()
	<-streamDone
	sc := bufio.NewScanner(strings.NewReader(rec.Body.String()))
	entries := 0
	var dropped int64
	for sc.Scan() {
		var line control.RequestLogLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		switch {
		case line.RequestLogEntry != nil:
			if dropped != 0 {
				t.Fatal("an entry after the dropped notice; want the kept entries first")
			}
			if line.RequestID != "r1" || line.Host != "app.example.com" || line.Status != 200 || line.TunnelID != "t1" || line.EdgeNode != "edge-1" {
				t.Fatalf("entry = %+v", *line.RequestLogEntry)
			}
			entries++
		case line.Dropped > 0:
			dropped = line.Dropped
		}
	}
	if entries != tailBuffer || dropped != n-tailBuffer {
		t.Errorf("stream: %d entries then dropped=%d; want %d then %d", entries, dropped, tailBuffer, n-tailBuffer)
	}
}

func TestRequestLogLimitsSubscribers(t *testing.T) {
	l := newRequestLog("edge-1", fixedRouter("t1"), nil)
	for i := range maxTailSubscribers {
		if !l.subscribe(&tailSub{}) {
			t.Fatalf("subscriber %d refused, want %d accepted", i+1, maxTailSubscribers)
		}
	}
	if l.subscribe(&tailSub{}) {
		t.Error("one subscriber past the limit accepted")
	}
}

// TestRequestLogEndpointDocumented: the edge's own API endpoint is in
// docs/openapi.yaml, marked as served by package edge.
func TestRequestLogEndpointDocumented(t *testing.T) {
	data, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	ep := newRequestLog("n", fixedRouter("t"), nil).endpoint(nil)
	method, path, _ := strings.Cut(ep.Pattern, " ")
	ops := doc.Paths[path]
	if ops == nil || ops[strings.ToLower(method)] == nil || ops["x-adit-package"] != "edge" {
		t.Errorf("docs/openapi.yaml: want %s with x-adit-package: edge, got %v", ep.Pattern, ops)
	}
}

// TestCloseEndsRequestStreams: an edge closing ends the request streams it
// serves at once, rather than wait for them in the API server's shutdown.
func TestCloseEndsRequestStreams(t *testing.T) {
	s := startTestEdge(t)
	tun, err := s.Service().CreateTunnel(t.Context(), "streamed", make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(s.AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	c, err := control.NewClient(s.APIURL(), strings.TrimSpace(string(token)), s.CAPEM())
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		ended <- c.TailRequests(context.Background(), tun.ID, control.TailOptions{}, func(control.RequestLogLine) error { return nil })
	}()
	poll.Until(t, "the stream to subscribe", func() bool { return s.reqLog.active.Load() > 0 })
	// A stream still open when the API server's shutdown times out makes
	// Close fail ("api server: context deadline exceeded").
	if err := s.Close(); err != nil {
		t.Fatalf("Close with a request stream open: %v", err)
	}
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("TailRequests did not return after the edge closed")
	}
}
