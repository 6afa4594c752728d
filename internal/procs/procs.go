// Package procs fits GOMAXPROCS to a long-running process's load.
//
// A tunnel hop is mostly waiting: a request wakes the edge, which hands it
// from goroutine to goroutine (HTTP server, transport, stream) and sends it
// on. With several Ps, each hand-off can wake another OS thread on another
// CPU (a futex, often an inter-processor interrupt on a VM), and at low
// load that wake-up is most of what a request costs: with one P the same
// hand-offs are goroutine switches on one thread. On a 2-vCPU VM, one P
// took 50–80 µs off the median of sequential requests through the tunnel
// (docs/performance.md), but costs throughput once a process needs more
// than a core.
//
// Adapt therefore runs a process on one P while it is lightly loaded and
// on the default (runtime.SetDefaultGOMAXPROCS: the CPUs it may use) as
// soon as one P is not enough. Every Interval it samples two things: the
// process's CPU time (user and system, all threads), and how long
// goroutines waited to run (the runtime's /sched/latencies histogram; the
// wait per second of wall time is about the length of the run queue). On
// one P, a queue above QueueUp (work waits for the P) or CPU use above Up
// sends it back to the default at once; on the default, CPU use below Down
// for DownAfter sends it to one P. CPU use alone would not do for going
// up: a process that shares the machine's CPUs with busy neighbours may
// never get Up cores on one thread, however much work waits for it. On a
// 2-vCPU VM, sequential requests put 0.02–0.06 goroutines in the edge's
// and the connector's queue and 50 concurrent ones 0.7–2.3.
//
// A GOMAXPROCS environment variable turns it off: the operator's choice
// stands.
package procs

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"time"

	"github.com/adit-dev/adit/internal/logs"
)

// Config tunes Adapt. The zero value is ready to use.
type Config struct {
	// Interval is how often the process's CPU time is sampled. If zero,
	// 250ms.
	Interval time.Duration
	// Up is the CPU use, in cores, above which a process on one P gets
	// the default back. If zero, 0.9.
	Up float64
	// QueueUp is the run queue (goroutine-seconds waited to run, per
	// second) above which a process on one P gets the default back. If
	// zero, 0.25.
	QueueUp float64
	// Down is the CPU use, in cores, below which (for DownAfter) a process
	// goes to one P. If zero, 0.35.
	Down float64
	// DownAfter is how long the use must stay below Down. If zero, 2s.
	DownAfter time.Duration
	// Logger gets each change at debug level. If nil, nothing is logged.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = 250 * time.Millisecond
	}
	if c.Up == 0 {
		c.Up = 0.9
	}
	if c.QueueUp == 0 {
		c.QueueUp = 0.25
	}
	if c.Down == 0 {
		c.Down = 0.35
	}
	if c.DownAfter == 0 {
		c.DownAfter = 2 * time.Second
	}
	c.Logger = logs.Component(c.Logger, "procs")
	return c
}

// Adapt fits GOMAXPROCS to the load until ctx ends, then gives the process
// its default back. It returns at once, reporting whether it adapts; the
// work is done by a goroutine. It does nothing where GOMAXPROCS is set in
// the environment, where the default is already 1, or where the process's
// CPU time cannot be read.
func Adapt(ctx context.Context, cfg Config) bool {
	if os.Getenv("GOMAXPROCS") != "" || runtime.GOMAXPROCS(0) <= 1 {
		return false
	}
	start, ok := cpuTime()
	if !ok {
		return false
	}
	cfg = cfg.withDefaults()
	go run(ctx, cfg, start)
	return true
}

func run(ctx context.Context, cfg Config, lastCPU time.Duration) {
	g := governor{cfg: cfg}
	var q schedQueue
	q.sample()
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			if g.one {
				runtime.SetDefaultGOMAXPROCS()
				cfg.Logger.Debug("stopped: default GOMAXPROCS", "gomaxprocs", runtime.GOMAXPROCS(0))
			}
			return
		case now := <-t.C:
			cpu, _ := cpuTime()
			wall := now.Sub(last)
			use := float64(cpu-lastCPU) / float64(wall)
			queue := q.sample().Seconds() / wall.Seconds()
			lastCPU, last = cpu, now
			switch g.observe(now, use, queue) {
			case toOne:
				runtime.GOMAXPROCS(1)
				cfg.Logger.Debug("light load: one P", "cpu_cores", round2(use))
			case toDefault:
				runtime.SetDefaultGOMAXPROCS()
				cfg.Logger.Debug("one P is not enough: default GOMAXPROCS", "cpu_cores", round2(use),
					"run_queue", round2(queue), "gomaxprocs", runtime.GOMAXPROCS(0))
			}
		}
	}
}

// schedQueue reads the runtime's histogram of how long goroutines waited
// to run.
type schedQueue struct {
	s    [1]metrics.Sample
	prev []uint64
}

// sample returns the time goroutines waited to run since the last sample
// (each bucket counted at its middle; the last, open one at its lower
// bound), as far as the runtime records it.
func (q *schedQueue) sample() time.Duration {
	q.s[0].Name = "/sched/latencies:seconds"
	metrics.Read(q.s[:])
	if q.s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0
	}
	h := q.s[0].Value.Float64Histogram()
	var wait float64
	for i, c := range h.Counts {
		if i >= len(q.prev) || c <= q.prev[i] {
			continue
		}
		lo, hi := h.Buckets[i], h.Buckets[i+1]
		if math.IsInf(lo, -1) {
			lo = 0
		}
		if math.IsInf(hi, 1) {
			hi = lo
		}
		wait += float64(c-q.prev[i]) * (lo + hi) / 2
	}
	q.prev = append(q.prev[:0], h.Counts...)
	return time.Duration(wait * float64(time.Second))
}

type change int

const (
	stay change = iota
	toOne
	toDefault
)

// governor decides, sample by sample, when to change.
type governor struct {
	cfg      Config
	one      bool      // on one P
	lowSince time.Time // start of the run of samples below Down; zero if none
}

// observe takes the CPU use (in cores) and the run queue measured up to
// now and says what to change.
func (g *governor) observe(now time.Time, use, queue float64) change {
	if g.one {
		if use > g.cfg.Up || queue > g.cfg.QueueUp {
			g.one = false
			return toDefault
		}
		return stay
	}
	if use >= g.cfg.Down {
		g.lowSince = time.Time{}
		return stay
	}
	if g.lowSince.IsZero() {
		g.lowSince = now
	}
	if now.Sub(g.lowSince) < g.cfg.DownAfter {
		return stay
	}
	g.one, g.lowSince = true, time.Time{}
	return toOne
}

func round2(f float64) float64 { return float64(int(f*100+0.5)) / 100 }
