package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestNewTunnel(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewTunnel(reg, TunnelOpts{Prefix: "x", RequestsHelp: "r", DurationHelp: "d", RegistrationsHelp: "g", BytesHelp: "b",
		ConnectionsHelp: "c", In: "in", Out: "out", Connections: func() float64 { return 3 }})
	m.Requests.WithLabelValues("200").Inc()
	m.BytesIn.Add(5)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, f := range families {
		got[f.GetName()] = len(f.GetMetric())
	}
	for name, n := range map[string]int{"x_requests_total": 1, "x_request_duration_seconds": 1, "x_registrations_total": 3, "x_bytes_total": 2, "x_tunnel_connections": 1} {
		if got[name] != n {
			t.Errorf("%s: %d series, want %d (all: %v)", name, got[name], n, got)
		}
	}
}
