package metrics

import "github.com/prometheus/client_golang/prometheus"

// Tunnel are the metrics the edge and the connector both keep about their
// side of the tunnel, named with their prefix ("adit_edge",
// "adit_connector").
type Tunnel struct {
	Requests      *prometheus.CounterVec // <prefix>_requests_total{code}
	Duration      prometheus.Histogram   // <prefix>_request_duration_seconds, DurationBuckets
	Registrations *prometheus.CounterVec // <prefix>_registrations_total{result}: ok, refused, failed, present from the start
	BytesIn       prometheus.Counter     // <prefix>_bytes_total{direction=TunnelOpts.In}
	BytesOut      prometheus.Counter     // <prefix>_bytes_total{direction=TunnelOpts.Out}
}

// TunnelOpts name and describe a Tunnel's metrics.
type TunnelOpts struct {
	Prefix string // "adit_edge"
	// The help texts of requests_total, request_duration_seconds,
	// registrations_total, bytes_total and tunnel_connections.
	RequestsHelp, DurationHelp, RegistrationsHelp, BytesHelp, ConnectionsHelp string
	// In and Out are the direction labels of bytes_total: "from_edge",
	// "to_edge".
	In, Out string
	// Connections reports the registered tunnel connections
	// (<prefix>_tunnel_connections).
	Connections func() float64
}

// NewTunnel makes the metrics o describes and registers them with reg.
func NewTunnel(reg prometheus.Registerer, o TunnelOpts) Tunnel {
	t := Tunnel{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: o.Prefix + "_requests_total", Help: o.RequestsHelp,
		}, []string{"code"}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: o.Prefix + "_request_duration_seconds", Help: o.DurationHelp, Buckets: DurationBuckets,
		}),
		Registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: o.Prefix + "_registrations_total", Help: o.RegistrationsHelp,
		}, []string{"result"}),
	}
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: o.Prefix + "_bytes_total", Help: o.BytesHelp,
	}, []string{"direction"})
	t.BytesIn = bytes.WithLabelValues(o.In)
	t.BytesOut = bytes.WithLabelValues(o.Out)
	for _, r := range []string{"ok", "refused", "failed"} {
		t.Registrations.WithLabelValues(r)
	}
	reg.MustRegister(t.Requests, t.Duration, t.Registrations, bytes,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: o.Prefix + "_tunnel_connections", Help: o.ConnectionsHelp,
		}, o.Connections))
	return t
}
