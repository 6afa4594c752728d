// Package metrics serves an adit process's operator endpoints on a plain
// HTTP listener of its own (never the public one):
//
//	/metrics      Prometheus text exposition of one Registry
//	/ready        200 with {"status":200,"readyConnections":N,...} when the
//	              process can serve, else 503 with the same body
//	/healthcheck  200 "OK" while the process is up
//	/debug/pprof/ Go's profiles (CPU, heap, allocations, goroutines, ...),
//	              as cloudflared serves them on its metrics address
//
// /ready answers like cloudflared's, so container and load-balancer checks
// written for it keep working; `adit tunnel ready` is its client (Check).
//
// Every server has its own prometheus.Registry (NewRegistry), never the
// global one, so several edges and connectors can run in one process.
package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/adit-dev/adit/internal/logs"
)

// Readiness is the body of /ready.
type Readiness struct {
	// Status is the HTTP status /ready answers with: 200 or 503.
	Status int `json:"status"`
	// ReadyConnections is the number of registered tunnel connections.
	ReadyConnections int `json:"readyConnections"`
	// ConnectorID is set by a connector: its ID, as the edge records it.
	ConnectorID string `json:"connectorId,omitempty"`
	// EdgeNode is set by an edge: its node name.
	EdgeNode string `json:"edgeNode,omitempty"`
	// Reason says, when Status is not 200, why not.
	Reason string `json:"reason,omitempty"`
}

// Config configures a metrics server.
type Config struct {
	// Addr is the listen address, host:port. Port 0 picks a free port
	// (see Server.Addr). Required.
	Addr string
	// Gatherer is what /metrics serves. If nil, an empty registry.
	Gatherer prometheus.Gatherer
	// Ready answers /ready. If nil, /ready is always 200.
	Ready func() Readiness
	// Logger receives the server's errors. If nil, they are discarded.
	Logger *slog.Logger
}

// DurationBuckets are the request-duration histogram buckets of the edge
// and the connector, in seconds: 1 ms to 30 s.
var DurationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewRegistry returns a registry with the Go runtime and process
// collectors registered.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Handler serves /metrics, /ready and /healthcheck as cfg says (cfg.Addr
// is not used).
func Handler(cfg Config) http.Handler {
	g := cfg.Gatherer
	if g == nil {
		g = prometheus.NewRegistry()
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(orDiscard(cfg.Logger).Handler(), slog.LevelWarn),
		MaxRequestsInFlight: 4,
		CoalesceGather:      true,
	}))
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		rd := Readiness{Status: http.StatusOK}
		if cfg.Ready != nil {
			rd = cfg.Ready()
		}
		if rd.Status == 0 {
			rd.Status = http.StatusOK
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(rd.Status)
		json.NewEncoder(w).Encode(rd)
	})
	mux.HandleFunc("GET /healthcheck", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "OK\n")
	})
	// pprof.Index serves the named profiles (heap, allocs, goroutine, ...)
	// under /debug/pprof/NAME; these four are not named profiles.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

func orDiscard(log *slog.Logger) *slog.Logger {
	return logs.Component(log, "metrics")
}

// Server is a running metrics listener.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// Listen binds cfg.Addr and serves until Close.
func Listen(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		return nil, errors.New("metrics: no listen address")
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	log := orDiscard(cfg.Logger)
	s := &Server{
		ln: ln,
		srv: &http.Server{
			Handler:           Handler(cfg),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       time.Minute,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("server stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server; scrapes in progress get a second to finish.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	<-s.done
	return nil
}

// Check asks the /ready endpoint of the metrics server at addr (host:port,
// or a URL) and returns its answer. The error is nil only for a 200; it is
// one line saying why otherwise.
func Check(ctx context.Context, addr string) (Readiness, error) {
	u := addr
	if !strings.Contains(u, "://") {
		u = "http://" + addr
	}
	u = strings.TrimSuffix(u, "/") + "/ready"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Readiness{}, fmt.Errorf("metrics: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Readiness{}, fmt.Errorf("metrics: %s: %w", u, unwrapURLError(err))
	}
	defer resp.Body.Close()
	var rd Readiness
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err := json.Unmarshal(body, &rd); err != nil {
		if resp.StatusCode != http.StatusOK {
			return rd, fmt.Errorf("metrics: %s answered %s", u, resp.Status)
		}
		return rd, fmt.Errorf("metrics: %s: not a readiness answer: %v", u, err)
	}
	rd.Status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		reason := rd.Reason
		if reason == "" {
			reason = fmt.Sprintf("%d registered connections", rd.ReadyConnections)
		}
		return rd, fmt.Errorf("not ready: %s", reason)
	}
	return rd, nil
}

// unwrapURLError drops the "Get \"url\": " prefix the URL is already in.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
