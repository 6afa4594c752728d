package connector

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/adit-dev/adit/internal/metrics"
	"github.com/adit-dev/adit/tunnel"
)

// connMetrics are the connector's Prometheus metrics, in a registry of its
// own (several connectors may run in one process):
//
//	adit_connector_requests_total{code}          request streams served, by the status sent back ("none" if none was, 499 if the edge gave up first)
//	adit_connector_request_duration_seconds      stream arrival to response header (the origin's latency, mostly)
//	adit_connector_streams_in_flight             request streams being served
//	adit_connector_tunnel_connections            registered connections to the edge
//	adit_connector_registrations_total{result}   ok, refused (the edge said no), failed (unreachable, broken off)
//	adit_connector_reconnects_total              connection attempts after a failure or a lost connection
//	adit_connector_bytes_total{direction}        stream bytes from_edge / to_edge, framing included
//	adit_connector_origin_errors_total           requests whose origin could not be reached
//	adit_connector_config_version, _config_failures_total   the remote configuration (remote.go)
type connMetrics struct {
	registry      *prometheus.Registry
	requests      *prometheus.CounterVec
	byStatus      *metrics.StatusCounters // requests, resolved once per code
	duration      prometheus.Histogram
	inflight      prometheus.Gauge
	registrations *prometheus.CounterVec
	reconnects    prometheus.Counter
	bytesIn       prometheus.Counter
	bytesOut      prometheus.Counter
	originErrors  prometheus.Counter
}

func newConnMetrics(live func() float64) *connMetrics {
	m := &connMetrics{
		registry: metrics.NewRegistry(),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "adit_connector_streams_in_flight",
			Help: "Request streams being served.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "adit_connector_reconnects_total",
			Help: "Connection attempts made after a failed attempt or a lost connection.",
		}),
		originErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "adit_connector_origin_errors_total",
			Help: "Requests whose origin service could not be reached.",
		}),
	}
	t := metrics.NewTunnel(m.registry, metrics.TunnelOpts{
		Prefix:            "adit_connector",
		RequestsHelp:      "Request streams served, by the status sent back to the edge (\"none\" if none was).",
		DurationHelp:      "Time from a request stream's arrival to its response header.",
		RegistrationsHelp: "Connection attempts, by result: ok, refused (the edge reached and said no), failed (edge unreachable or the attempt broke off).",
		BytesHelp:         "Bytes of request streams received from and sent to the edge, framing included.",
		ConnectionsHelp:   "Registered connections to the edge.",
		In:                "from_edge",
		Out:               "to_edge",
		Connections:       live,
	})
	m.requests, m.duration, m.registrations, m.bytesIn, m.bytesOut = t.Requests, t.Duration, t.Registrations, t.BytesIn, t.BytesOut
	m.byStatus = metrics.NewStatusCounters(m.requests)
	m.registry.MustRegister(m.inflight, m.reconnects, m.originErrors)
	return m
}

// track wraps a request stream to count it, its bytes, its status and its
// time to the response header.
func (m *connMetrics) track(s tunnel.Stream) tunnel.Stream {
	m.inflight.Inc()
	return &trackedStream{Stream: s, m: m, start: time.Now()}
}

type trackedStream struct {
	tunnel.Stream
	m      *connMetrics
	start  time.Time
	wrote  bool // set by the first write, which carries the response header
	status int  // the response header's status; -1: the first write had none
	closed sync.Once
}

func (s *trackedStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	if n > 0 {
		s.m.bytesIn.Add(float64(n))
	}
	return n, err
}

// Write sees the response header first: tunnel.WriteMessage writes a frame
// in one call.
func (s *trackedStream) Write(p []byte) (int, error) {
	if !s.wrote {
		s.wrote, s.status = true, -1
		if status, ok := responseStatus(p); ok {
			s.status = status
			s.m.duration.Observe(time.Since(s.start).Seconds())
		}
	}
	n, err := s.Stream.Write(p)
	if n > 0 {
		s.m.bytesOut.Add(float64(n))
	}
	return n, err
}

func (s *trackedStream) Close() error {
	s.closed.Do(func() {
		s.m.inflight.Dec()
		switch {
		case !s.wrote && s.Stream.Context().Err() != nil:
			// The edge gave up before there was an answer: its client
			// went away (stream.go, abandoned).
			s.m.byStatus.Inc(statusClientClosed)
		case !s.wrote || s.status < 0:
			s.m.requests.WithLabelValues("none").Inc()
		default:
			s.m.byStatus.Inc(s.status)
		}
	})
	return s.Stream.Close()
}

// responseStatus reads the status of a ResponseHeader frame at the start
// of p without decoding the rest.
func responseStatus(p []byte) (int, bool) {
	if len(p) < 2 || tunnel.FrameType(p[0]) != tunnel.FrameResponse {
		return 0, false
	}
	n, k := binary.Uvarint(p[1:])
	if k <= 0 || uint64(len(p)-1-k) < n {
		return 0, false
	}
	b := p[1+k : 1+k+int(n)]
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return 0, false
		}
		b = b[l:]
		if num == 1 && typ == protowire.VarintType {
			v, l := protowire.ConsumeVarint(b)
			if l < 0 || v > 999 {
				return 0, false
			}
			return int(v), true
		}
		l = protowire.ConsumeFieldValue(num, typ, b)
		if l < 0 {
			return 0, false
		}
		b = b[l:]
	}
	return 0, false
}

// readiness answers /ready: 200 once at least one connection is registered.
func (c *Connector) readiness() metrics.Readiness {
	n := c.Connections()
	rd := metrics.Readiness{Status: http.StatusOK, ReadyConnections: n, ConnectorID: c.id}
	if n == 0 {
		rd.Status, rd.Reason = http.StatusServiceUnavailable, "no connection to the edge is registered"
	}
	return rd
}

// Metrics is the registry behind the connector's /metrics, for in-process
// scraping and tests. It is never nil.
func (c *Connector) Metrics() prometheus.Gatherer { return c.metrics.registry }

// MetricsAddr is the bound address of the metrics listener: nil until Run
// has opened it (before any connection registers, so before Ready is
// closed), and nil if Config.MetricsAddr is empty.
func (c *Connector) MetricsAddr() net.Addr {
	if a := c.metricsAddr.Load(); a != nil {
		return *a
	}
	return nil
}

// serveMetrics opens the metrics listener if Config.MetricsAddr is set; the
// returned function closes it.
func (c *Connector) serveMetrics() (func(), error) {
	if c.cfg.MetricsAddr == "" {
		return func() {}, nil
	}
	srv, err := metrics.Listen(metrics.Config{
		Addr:     c.cfg.MetricsAddr,
		Gatherer: c.metrics.registry,
		Ready:    c.readiness,
		Logger:   c.log,
	})
	if err != nil {
		return nil, fmt.Errorf("connector: %w", err)
	}
	addr := srv.Addr()
	c.metricsAddr.Store(&addr)
	c.log.Info("metrics listening", "addr", addr.String(), "paths", "/metrics /ready /healthcheck /debug/pprof/")
	return func() {
		srv.Close()
		c.metricsAddr.Store(nil)
	}, nil
}
