package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/adit-dev/adit/bench/procstat"
)

// The CPU budget of a path: the CPU time each process on it spends per
// small GET (µs/req) or per GB moved (s/GB), over the measured window.
// On a machine whose CPUs every process shares and the load saturates,
// the throughput a path can reach is inversely proportional to its total,
// so direct's total over a path's bounds the path's req/s relative to
// direct's: the "CPU-bound ceiling vs direct" row.

// clockTicks is USER_HZ, the unit of CPU times in /proc.
const clockTicks = procstat.ClockTicks

// cpuSides are the processes on a path, in table order: the load
// generator, the origin, on an adit path the edge and its connector, on
// the proxy2 path its two proxies.
var cpuSides = []string{"client", "origin", "edge", "connector", "proxy hop 1", "proxy hop 2"}

// cpuHops are the sides between the client and the origin: what a path
// itself costs. Their sum is the "hops" row, compared between adit and
// proxy2 (issue 16: adit's hops at most half of proxy2's).
var cpuHops = []string{"edge", "connector", "proxy hop 1", "proxy hop 2"}

// cpuRows are the CPU rows of a scenario, in table order: a row per side,
// the hops' sum, then the sum of all.
var cpuRows = append(cpuSides[:len(cpuSides):len(cpuSides)], "hops", "total")

const (
	unitCPUReq    = "µs/req"
	unitCPUGB     = "s/GB"
	metricCeiling = "CPU-bound ceiling vs direct"
	unitCeiling   = "× direct req/s"
)

// cpuMetric names the row of side's CPU time: "client CPU", ..., "total CPU".
func cpuMetric(side string) string { return side + " CPU" }

// cpuRowRank orders a scenario's CPU rows after its other rows: 0 for
// other rows, then client, origin, edge, connector, total, ceiling.
func cpuRowRank(f *Figure) int {
	if f.Metric == metricCeiling {
		return len(cpuRows) + 1
	}
	if f.Unit != unitCPUReq && f.Unit != unitCPUGB {
		return 0
	}
	for i, side := range cpuRows {
		if f.Metric == cpuMetric(side) {
			return i + 1
		}
	}
	return 0
}

// procCPU is the CPU time (user and system, every thread, exited ones
// included) that process pid has used: its CPU-time clock
// (clock_getcpuclockid(3)), which counts the same total as utime+stime
// in /proc/PID/stat but in ns rather than 10 ms ticks, too coarse for a
// short window. If the clock cannot be read it falls back to
// /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	if d, err := clockCPU(pid); err == nil {
		return d, nil
	}
	return procstat.CPU(pid)
}

// clockCPU reads the CPU-time clock of process pid: clock id
// (^pid << 3) | CPUCLOCK_SCHED (2), as the kernel encodes it.
func clockCPU(pid int) (time.Duration, error) {
	if pid <= 0 || pid >= 1<<28 { // the id holds the pid in 29 bits, signed
		return 0, fmt.Errorf("bench: cpu clock: pid %d out of range", pid)
	}
	id := int32(^pid)<<3 | 2
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, uintptr(id), uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0, fmt.Errorf("bench: cpu clock of %d: %w", pid, errno)
	}
	return time.Duration(ts.Nano()), nil
}

// cpuMeter measures the CPU time of the processes on a path over a
// window, and the /1k requests the origin answered in it: mark reads
// them at the window's start and again at its end. A side with no pid
// (wrk, which has exited by then) is given with set.
type cpuMeter struct {
	origin *originProc
	pids   map[string]int // by side
	marks  []cpuMark
	extra  map[string]time.Duration // by side, from set
	err    error
}

type cpuMark struct {
	served1k int64
	cpu      map[string]time.Duration
}

// newCPUMeter meters p's processes: the origin, the edge and p's
// connector on an adit path, and the harness itself as the client if
// selfClient (the Go client).
func (r *rig) newCPUMeter(p *path, selfClient bool) *cpuMeter {
	m := &cpuMeter{origin: r.origin, pids: map[string]int{"origin": r.origin.pid()}, extra: map[string]time.Duration{}}
	switch p.kind {
	case kindAdit, kindAccess:
		m.pids["edge"] = r.edge.pid()
		m.pids["connector"] = p.conn.pid()
	case kindProxy2:
		for i, h := range p.hops {
			m.pids[fmt.Sprintf("proxy hop %d", i+1)] = h.pid()
		}
	}
	if selfClient {
		m.pids["client"] = os.Getpid()
	}
	return m
}

// mark reads the counters; call it at the window's start and end.
func (m *cpuMeter) mark() {
	if m.err != nil {
		return
	}
	if len(m.marks) == 2 {
		m.err = fmt.Errorf("bench: cpu: more than two marks")
		return
	}
	s, err := m.origin.stats()
	if err != nil {
		m.err = err
		return
	}
	k := cpuMark{served1k: s.Served1k, cpu: map[string]time.Duration{}}
	for side, pid := range m.pids {
		if k.cpu[side], err = procCPU(pid); err != nil {
			m.err = fmt.Errorf("bench: cpu of the %s: %w", side, err)
			return
		}
	}
	m.marks = append(m.marks, k)
}

// set gives side's CPU time over the window directly.
func (m *cpuMeter) set(side string, d time.Duration) { m.extra[side] = d }

// used returns each side's CPU time between the two marks and the /1k
// requests the origin answered meanwhile.
func (m *cpuMeter) used() (map[string]time.Duration, int64, error) {
	if m.err != nil {
		return nil, 0, m.err
	}
	if len(m.marks) != 2 {
		return nil, 0, fmt.Errorf("bench: cpu: %d marks, want 2", len(m.marks))
	}
	used := map[string]time.Duration{}
	for side, d := range m.marks[1].cpu {
		used[side] = d - m.marks[0].cpu[side]
	}
	for side, d := range m.extra {
		used[side] = d
	}
	return used, m.marks[1].served1k - m.marks[0].served1k, nil
}

// cpuPer divides each side's CPU time, in unit, by n (requests, or GB);
// with total it adds their sum as "total". It returns nil if n is not
// positive.
func cpuPer(used map[string]time.Duration, n float64, unit time.Duration, total bool) map[string]float64 {
	if n <= 0 || unit <= 0 {
		return nil
	}
	per := map[string]float64{}
	var sum, hops time.Duration
	var hasHops bool
	for side, d := range used {
		per[side] = float64(d) / float64(unit) / n
		sum += d
		if slices.Contains(cpuHops, side) {
			hops += d
			hasHops = true
		}
	}
	if hasHops {
		per["hops"] = float64(hops) / float64(unit) / n
	}
	if total {
		per["total"] = float64(sum) / float64(unit) / n
	}
	return per
}

// setCPU records per (from cpuPer) as scenario's CPU rows for path, and
// returns them as one line for the progress log.
func (r *Results) setCPU(scenario, unit, path string, per map[string]float64) string {
	var parts []string
	for _, side := range cpuRows {
		if v, ok := per[side]; ok {
			r.set(figName{scenario, cpuMetric(side)}, unit, path, v)
			parts = append(parts, fmt.Sprintf("%s %.3g", side, v))
		}
	}
	return "CPU " + unit + ": " + strings.Join(parts, ", ")
}

// setCeiling fills scenario's "CPU-bound ceiling vs direct" row: for each
// path with a total CPU time per request, direct's total divided by its
// own. Paths without a total (--compare paths, whose processes the
// harness does not know) get none.
func (r *Results) setCeiling(scenario string) {
	total := figName{scenario, cpuMetric("total")}
	d, ok := r.get(total, "direct")
	if !ok || d <= 0 {
		return
	}
	for _, f := range r.Figures {
		if f.Scenario != total.scenario || f.Metric != total.metric {
			continue
		}
		for p, v := range f.Values {
			if p != "direct" && v > 0 {
				r.set(figName{scenario, metricCeiling}, unitCeiling, p, d/v)
			}
		}
	}
}
