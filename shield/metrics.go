package shield

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// decisions counts a layer's decisions by reason, as
// adit_edge_<layer>_decisions_total{reason}.
type decisions struct{ vec *prometheus.CounterVec }

func newDecisions(reg prometheus.Registerer, layer, help string) (decisions, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "adit_edge_" + layer + "_decisions_total",
		Help: help,
	}, []string{"reason"})
	if reg != nil {
		if err := reg.Register(vec); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return decisions{}, err
			}
			vec = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	return decisions{vec: vec}, nil
}

// counter returns the counter of a reason, to keep (no lookup per request).
func (d decisions) counter(reason string) prometheus.Counter { return d.vec.WithLabelValues(reason) }
