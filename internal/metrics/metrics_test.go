package metrics

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServer(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Add(3)
	var conns atomic.Int64
	s, err := Listen(Config{
		Addr:     "127.0.0.1:0",
		Gatherer: reg,
		Ready: func() Readiness {
			n := int(conns.Load())
			rd := Readiness{Status: http.StatusOK, ReadyConnections: n, ConnectorID: "c-1"}
			if n == 0 {
				rd.Status, rd.Reason = http.StatusServiceUnavailable, "no connection registered"
			}
			return rd
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.Addr().String()

	code, body := get(t, base+"/metrics")
	for _, want := range []string{"test_things_total 3", "go_goroutines", "process_start_time_seconds"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics: got %d, want 200 with %q in:\n%.400s", code, want, body)
		}
	}
	if code, body := get(t, base+"/healthcheck"); code != 200 || strings.TrimSpace(body) != "OK" {
		t.Errorf("/healthcheck: got %d %q, want 200 OK", code, body)
	}

	if code, _ := get(t, base+"/ready"); code != 503 {
		t.Errorf("/ready with no connection: got %d, want 503", code)
	}
	if _, err := Check(context.Background(), s.Addr().String()); err == nil || !strings.Contains(err.Error(), "no connection registered") {
		t.Errorf("Check with no connection: got %v, want the reason", err)
	}

	conns.Store(2)
	code, body = get(t, base+"/ready")
	if code != 200 {
		t.Errorf("/ready with 2 connections: got %d, want 200", code)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("/ready body %q: %v", body, err)
	}
	want := map[string]any{"status": 200.0, "readyConnections": 2.0, "connectorId": "c-1"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("/ready %s: got %v, want %v (body %s)", k, m[k], v, body)
		}
	}
	rd, err := Check(context.Background(), "http://"+s.Addr().String()+"/")
	if err != nil || rd.ReadyConnections != 2 {
		t.Errorf("Check: got %+v, %v; want 2 connections, no error", rd, err)
	}
	if code, _ := get(t, base+"/nope"); code != 404 {
		t.Errorf("unknown path: got %d, want 404", code)
	}
	for _, tc := range []struct{ path, want string }{
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/goroutine?debug=1", "goroutine profile:"},
		{"/debug/pprof/cmdline", ""},
	} {
		if code, body := get(t, base+tc.path); code != 200 || !strings.Contains(body, tc.want) {
			t.Errorf("%s: got %d, want 200 with %q in:\n%.200s", tc.path, code, tc.want, body)
		}
	}
}

func TestCheckErrors(t *testing.T) {
	// Nothing listens.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Check(context.Background(), addr)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Check of a closed port: got %v, want one line saying refused", err)
	}

	// Something that is not a metrics server.
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "teapot", http.StatusTeapot)
	})}
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Close()
	if _, err := Check(context.Background(), ln.Addr().String()); err == nil || !strings.Contains(err.Error(), "418") {
		t.Errorf("Check of a non-metrics server: got %v, want it to name the status", err)
	}

	if _, err := Listen(Config{}); err == nil {
		t.Error("Listen with no address: got no error")
	}
}
