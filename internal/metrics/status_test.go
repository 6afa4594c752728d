package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestStatusCounters(t *testing.T) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_requests_total", Help: "r"}, []string{"code"})
	s := NewStatusCounters(vec)
	for _, code := range []int{200, 200, 404, 499, 200, 1000, -1} {
		s.Inc(code)
	}
	for _, tc := range []struct {
		code string
		want float64
	}{{"200", 3}, {"404", 1}, {"499", 1}, {"1000", 1}, {"-1", 1}} {
		if got := testutil.ToFloat64(vec.WithLabelValues(tc.code)); got != tc.want {
			t.Errorf("code %s: %v, want %v", tc.code, got, tc.want)
		}
	}
}

func BenchmarkStatusCounters(b *testing.B) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_requests_total", Help: "r"}, []string{"code"})
	b.Run("WithLabelValues", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			vec.WithLabelValues("200").Inc()
		}
	})
	s := NewStatusCounters(vec)
	b.Run("StatusCounters", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.Inc(200)
		}
	})
}
