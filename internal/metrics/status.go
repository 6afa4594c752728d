package metrics

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// StatusCounters are the counters of a vector labelled by HTTP status code
// (requests_total{code}), each resolved once: counting a request neither
// formats its code nor hashes the label, as WithLabelValues does every
// time.
type StatusCounters struct {
	vec   *prometheus.CounterVec
	codes [600]atomic.Pointer[counter] // by code; nil until first counted
}

type counter struct{ prometheus.Counter }

// NewStatusCounters counts into vec, whose only label is the code.
func NewStatusCounters(vec *prometheus.CounterVec) *StatusCounters {
	return &StatusCounters{vec: vec}
}

// Inc counts one request answered with code. A code outside 0-599 is
// counted too, only not cached.
func (s *StatusCounters) Inc(code int) {
	if code < 0 || code >= len(s.codes) {
		s.vec.WithLabelValues(strconv.Itoa(code)).Inc()
		return
	}
	c := s.codes[code].Load()
	if c == nil {
		c = &counter{s.vec.WithLabelValues(strconv.Itoa(code))}
		s.codes[code].Store(c) // a racing Store holds the same counter
	}
	c.Inc()
}
