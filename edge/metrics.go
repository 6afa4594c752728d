package edge

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adit-dev/adit/internal/metrics"
	"github.com/adit-dev/adit/tunnel"
)

// edgeMetrics are the edge's Prometheus metrics, in a registry of its own
// (several edges may run in one process). All methods accept a nil
// receiver, which records nothing.
//
//	adit_edge_requests_total{code}           public requests answered, by status
//	adit_edge_request_duration_seconds       arrival to response header
//	adit_edge_streams_in_flight              request streams open to connectors
//	adit_edge_tunnel_connections             registered connector connections
//	adit_edge_registrations_total{result}    ok, refused (auth, unknown tunnel), busy (admission.go), failed (protocol, timeout)
//	adit_edge_bytes_total{direction}         stream bytes to_connector / from_connector, framing included
//	adit_edge_request_retries_total          requests sent again on another connection (failover)
//	adit_edge_rejected_requests_total{reason} requests refused by a limit (body_too_large)
//	adit_edge_connections_suspected_total    connections that went quiet and were avoided
//	adit_edge_connections_drained_total      connections closed after their connector unregistered and finished
//	adit_edge_handshakes_refused_total{transport} tunnel handshakes refused for now (handshake.go)
//	adit_edge_handshakes_in_progress         tunnel handshakes in progress (handshake.go)
type edgeMetrics struct {
	reqLog        *requestLog // requestlog.go: nil records nothing
	traffic       *traffic    // traffic.go: per-hostname counts for the dashboard; nil records nothing
	registry      *prometheus.Registry
	requests      *prometheus.CounterVec
	byStatus      *metrics.StatusCounters // requests, resolved once per code
	duration      prometheus.Histogram
	registrations *prometheus.CounterVec
	bytesOut      prometheus.Counter
	bytesIn       prometheus.Counter
	retries       prometheus.Counter
	rejected      *prometheus.CounterVec
	suspected     prometheus.Counter
	drained       prometheus.Counter
	// handshakesRefused counts, by transport, the tunnel handshakes
	// refused for now (handshake.go): QUIC Initial packets answered with
	// CONNECTION_REFUSED (a first flight of two packets counts twice),
	// TCP connections answered with a 503.
	handshakesRefused *prometheus.CounterVec
}

func newEdgeMetrics(reg *registry) *edgeMetrics {
	m := &edgeMetrics{
		registry: metrics.NewRegistry(),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "adit_edge_request_retries_total",
			Help: "Requests sent again on another tunnel connection after theirs failed before any answer.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adit_edge_rejected_requests_total",
			Help: "Public requests refused by a limit, by reason.",
		}, []string{"reason"}),
		suspected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "adit_edge_connections_suspected_total",
			Help: "Tunnel connections that went quiet (no packet for a few keepalive periods) and were avoided.",
		}),
		drained: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "adit_edge_connections_drained_total",
			Help: "Tunnel connections closed by the edge once their connector unregistered and their streams finished.",
		}),
		handshakesRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adit_edge_handshakes_refused_total",
			Help: "Tunnel-port handshakes refused for now because too many were in progress (--max-handshakes), by transport: QUIC Initial packets answered with CONNECTION_REFUSED, TCP connections answered with a 503.",
		}, []string{"transport"}),
	}
	t := metrics.NewTunnel(m.registry, metrics.TunnelOpts{
		Prefix:            "adit_edge",
		RequestsHelp:      "Public HTTP requests answered, by status code.",
		DurationHelp:      "Time from a public request's arrival to its response header.",
		RegistrationsHelp: "Connector registrations, by result: ok, refused (unknown tunnel, wrong secret, state unavailable, draining), busy (too many at once: told to retry later), failed (protocol error, timeout).",
		BytesHelp:         "Bytes of request streams sent to and received from connectors, framing included.",
		ConnectionsHelp:   "Registered connector connections.",
		In:                "from_connector",
		Out:               "to_connector",
		Connections:       func() float64 { return float64(reg.count()) },
	})
	m.requests, m.duration, m.registrations, m.bytesIn, m.bytesOut = t.Requests, t.Duration, t.Registrations, t.BytesIn, t.BytesOut
	m.byStatus = metrics.NewStatusCounters(m.requests)
	for _, code := range []string{"200", "404", "502"} {
		m.requests.WithLabelValues(code)
	}
	m.rejected.WithLabelValues("body_too_large")
	for _, tr := range []string{"quic", "websocket"} {
		m.handshakesRefused.WithLabelValues(tr)
	}
	m.registry.MustRegister(m.retries, m.rejected, m.suspected, m.drained, m.handshakesRefused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "adit_edge_streams_in_flight",
			Help: "Request streams open to connectors.",
		}, func() float64 {
			var n int64
			for _, tc := range reg.all() {
				n += tc.inflight.Load()
			}
			return float64(n)
		}),
	)
	return m
}

func (m *edgeMetrics) registration(result string) {
	if m != nil {
		m.registrations.WithLabelValues(result).Inc()
	}
}

func (m *edgeMetrics) retried() {
	if m != nil {
		m.retries.Inc()
	}
}

func (m *edgeMetrics) reject(reason string) {
	if m != nil {
		m.rejected.WithLabelValues(reason).Inc()
	}
}

func (m *edgeMetrics) suspect() {
	if m != nil {
		m.suspected.Inc()
	}
}

func (m *edgeMetrics) drain() {
	if m != nil {
		m.drained.Inc()
	}
}

// instrument counts every public request by status and times it to its
// response header.
func (m *edgeMetrics) instrument(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, start: time.Now(), m: m, r: r}
		defer sw.finish()
		if r.Body != nil && r.Body != http.NoBody {
			sw.body.ReadCloser = r.Body // its bytes counted for traffic.go
			r.Body = &sw.body
		}
		h.ServeHTTP(sw, r)
	})
}

// statusWriter records a response's status and when its header went out.
// It unwraps for http.ResponseController, so flushing and hijacking reach
// the server's writer.
type statusWriter struct {
	http.ResponseWriter
	m     *edgeMetrics
	r     *http.Request
	start time.Time
	code  int
	took  time.Duration // arrival to response header
	out   int64         // body bytes written
	body  countingBody  // the request body, when it has one
}

// countingBody counts the bytes read from a request body.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.header(code)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.header(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.out += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if w.code == 0 {
		w.header(http.StatusOK)
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack is a protocol switch (takeUpgrade writes the 101 on the hijacked
// connection itself).
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.code == 0 {
		w.header(http.StatusSwitchingProtocols)
	}
	return c, rw, err
}

func (w *statusWriter) header(code int) {
	w.code = code
	w.took = time.Since(w.start)
	w.m.duration.Observe(w.took.Seconds())
}

func (w *statusWriter) finish() {
	if w.code == 0 {
		w.header(http.StatusOK)
	}
	w.m.byStatus.Inc(w.code)
	w.m.reqLog.finished(w.r, w.code, w.start, w.Header())         // requestlog.go
	w.m.traffic.record(w.r.Host, w.code, w.took, w.body.n, w.out) // traffic.go
}

// countedStream is a request stream whose bytes are counted (failover.go,
// newAttempt).
type countedStream struct {
	tunnel.Stream
	m *edgeMetrics
}

func (s *countedStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	if n > 0 {
		s.m.bytesIn.Add(float64(n))
	}
	return n, err
}

func (s *countedStream) Write(p []byte) (int, error) {
	n, err := s.Stream.Write(p)
	if n > 0 {
		s.m.bytesOut.Add(float64(n))
	}
	return n, err
}

// readiness answers /ready: an edge is ready from Start until Close begins
// or one of its servers fails, whether or not connectors are connected (a
// tunnel's absence is a 502 for its hostnames, not a reason to take the
// whole edge out of a load balancer).
func (s *Server) readiness() metrics.Readiness {
	rd := metrics.Readiness{Status: http.StatusOK, ReadyConnections: s.reg.count(), EdgeNode: s.node}
	if s.closing.Load() {
		rd.Status, rd.Reason = http.StatusServiceUnavailable, "edge shutting down"
		return rd
	}
	if s.drain.on.Load() { // drain.go
		rd.Status, rd.Reason = http.StatusServiceUnavailable, "edge draining"
		return rd
	}
	if why := s.paused(time.Now()); why != "" { // health.go
		rd.Status, rd.Reason = http.StatusServiceUnavailable, why
		return rd
	}
	if why := s.etcdUnready(); why != "" { // partition.go
		rd.Status, rd.Reason = http.StatusServiceUnavailable, why
		return rd
	}
	s.downMu.Lock()
	defer s.downMu.Unlock()
	if len(s.down) > 0 {
		reasons := make([]string, 0, len(s.down))
		for _, err := range s.down {
			reasons = append(reasons, err.Error())
		}
		slices.Sort(reasons)
		rd.Status, rd.Reason = http.StatusServiceUnavailable, strings.Join(reasons, "; ")
	}
	return rd
}

// Metrics is the registry behind the edge's /metrics, for in-process
// scraping and tests. It is never nil.
func (s *Server) Metrics() prometheus.Gatherer { return s.metrics.registry }

// MetricsAddr is the bound address of the metrics listener, or nil if
// Config.MetricsAddr is empty.
func (s *Server) MetricsAddr() net.Addr {
	if s.metricsSrv == nil {
		return nil
	}
	return s.metricsSrv.Addr()
}
