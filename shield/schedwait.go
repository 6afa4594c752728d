package shield

import (
	"math"
	"runtime/metrics"
	"time"
)

// schedLatencies is the runtime's histogram of how long goroutines were
// runnable before they ran: the time work waits for a CPU.
const schedLatencies = "/sched/latencies:seconds"

// schedWait reads how long this process's goroutines waited for a CPU
// since its last read.
type schedWait struct {
	sample []metrics.Sample
	prev   []uint64
}

func newSchedWait() *schedWait {
	return &schedWait{sample: []metrics.Sample{{Name: schedLatencies}}}
}

// read returns the q-quantile of the waits since the last read and how
// many there were (0 on the first read).
func (s *schedWait) read(q float64) (time.Duration, uint64) {
	metrics.Read(s.sample)
	if s.sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0, 0
	}
	h := s.sample[0].Value.Float64Histogram()
	var d time.Duration
	var n uint64
	if len(s.prev) == len(h.Counts) {
		d, n = waitQuantile(h.Buckets, s.prev, h.Counts, q)
	}
	s.prev = append(s.prev[:0], h.Counts...)
	return d, n
}

// waitQuantile is the q-quantile of the events counted in cur but not in
// prev (two readings of one histogram with bounds buckets, in seconds):
// the lower bound of the bucket that holds the longest 1-q of them (at
// least one), and how many events there were. Counts that went down (not a later reading) count as none.
func waitQuantile(buckets []float64, prev, cur []uint64, q float64) (time.Duration, uint64) {
	var n uint64
	for i := range cur {
		if cur[i] > prev[i] {
			n += cur[i] - prev[i]
		}
	}
	if n == 0 {
		return 0, 0
	}
	// The rank of the quantile, 1-based, such that at least 1-q of the
	// events are at it or above: of 100 events the p90 is the 91st.
	above := uint64(math.Ceil((1-q)*float64(n) - 1e-9))
	rank := n - min(max(above, 1), n) + 1
	var seen uint64
	for i := range cur {
		if cur[i] > prev[i] {
			seen += cur[i] - prev[i]
		}
		if seen >= rank {
			lo := buckets[i]
			if math.IsInf(lo, -1) || lo < 0 {
				lo = 0
			}
			if math.IsInf(lo, 1) || lo > math.MaxInt64/1e9 {
				return time.Duration(math.MaxInt64), n
			}
			return time.Duration(lo * 1e9), n
		}
	}
	return 0, n
}
