package edgedns

import (
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics counts what the server answers.
type metrics struct {
	answers *prometheus.CounterVec // by rcode and transport
	limited prometheus.Counter
	busy    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adit_dns_answers_total",
			Help: "DNS answers sent, by response code and transport (udp, tcp).",
		}, []string{"rcode", "transport"}),
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "adit_dns_rate_limited_total",
			Help: "UDP queries past the per-network rate limit, dropped or answered truncated.",
		}),
		busy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "adit_dns_busy_dropped_total",
			Help: "UDP queries dropped unanswered because MaxUDPQueries were being answered already.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.answers, m.limited, m.busy)
	}
	return m
}

func (m *metrics) answered(rcode int, transport string) {
	m.answers.WithLabelValues(dns.RcodeToString[rcode], transport).Inc()
}
