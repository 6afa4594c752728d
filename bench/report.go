package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Results is everything a run measured; it is written as JSON to --out.
type Results struct {
	Started  time.Time  `json:"started"`
	Seconds  float64    `json:"seconds"` // how long the run took
	Machine  Machine    `json:"machine"`
	Settings Settings   `json:"settings"`
	Paths    []PathInfo `json:"paths"`
	Figures  []*Figure  `json:"figures"`
	Targets  []Target   `json:"targets"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model,omitempty"`
	MemoryMiB int64  `json:"memory_mib,omitempty"`
	Kernel    string `json:"kernel,omitempty"`
	GoVersion string `json:"go_version"`
	Commit    string `json:"adit_commit,omitempty"`
	// LoadStart and LoadEnd are /proc/loadavg's 1, 5 and 15 minute load
	// averages before and after the run: anything else using the CPUs
	// shows here, and skews the figures.
	LoadStart string `json:"load_start,omitempty"`
	LoadEnd   string `json:"load_end,omitempty"`
}

// Settings are the run's parameters.
type Settings struct {
	Scenarios    []string `json:"scenarios"`
	Duration     string   `json:"duration"`
	Warmup       string   `json:"warmup"`
	Concurrency  []int    `json:"concurrency"`
	BigSize      int64    `json:"big_size"`
	IdleWS       int      `json:"idle_websockets"`
	IdleWSNote   string   `json:"idle_websockets_note,omitempty"` // why fewer than asked
	Rate         int      `json:"rate"`
	RateDuration string   `json:"rate_duration"`
	// LoadGen is what sent the small GETs: "go" (the harness's client) or
	// "wrk", whose `wrk -v` LoadGenVersion gives. Every other scenario
	// uses the Go client.
	LoadGen        string `json:"loadgen"`
	LoadGenVersion string `json:"loadgen_version,omitempty"`
	// Connector is the binary the connectors ran: "adit-connector" (the
	// default) or "adit" (--connector adit). The edge always runs adit.
	Connector            string `json:"connector"`
	ConnectorBinaryBytes int64  `json:"connector_binary_bytes,omitempty"` // size of the connectors' binary
	EdgeBinaryBytes      int64  `json:"edge_binary_bytes,omitempty"`      // size of adit
}

// PathInfo names a path and says whether it could be measured.
type PathInfo struct {
	Name      string `json:"name"`
	URL       string `json:"url"`
	Host      string `json:"host,omitempty"`
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
}

// Figure is one measured quantity (a row of the table) for every path.
type Figure struct {
	Scenario string `json:"scenario"`
	Metric   string `json:"metric"`
	Unit     string `json:"unit"`
	// Values by path name; a path without a value has a note or did not run.
	Values map[string]float64 `json:"values"`
	// Ratios is each value divided by direct's, for figures direct has.
	Ratios map[string]float64 `json:"ratio_to_direct,omitempty"`
	// RatiosProxy2 is each value divided by proxy2's (two ReverseProxy
	// hops, proxy2.go), for figures proxy2 has.
	RatiosProxy2 map[string]float64 `json:"ratio_to_proxy2,omitempty"`
	// Notes by path name: why a value is missing, or a caveat ("partial").
	Notes map[string]string `json:"notes,omitempty"`
}

// Target is one of the goals from issue 5, checked for one path.
type Target struct {
	Path string `json:"path"`
	Goal string `json:"goal"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

// figure names: scenario, metric.
type figName struct{ scenario, metric string }

var (
	figStartup       = figName{"startup", "tunnel run → first 200"}
	figRestart       = figName{"edge restart", "SIGTERM → first 200"}
	figRestartStart  = figName{"edge restart", "new edge start → first 200"}
	figRestartListen = figName{"edge restart", "new edge start → listening"}
	figRestartStop   = figName{"edge restart", "SIGTERM → old edge exited"}
)

func (r *Results) figure(f figName, unit string) *Figure {
	for _, x := range r.Figures {
		if x.Scenario == f.scenario && x.Metric == f.metric {
			return x
		}
	}
	x := &Figure{Scenario: f.scenario, Metric: f.metric, Unit: unit, Values: map[string]float64{}}
	r.Figures = append(r.Figures, x)
	return x
}

func (r *Results) set(f figName, unit, path string, v float64) {
	r.figure(f, unit).Values[path] = v
}

func (r *Results) note(f figName, unit, path, note string) {
	x := r.figure(f, unit)
	if x.Notes == nil {
		x.Notes = map[string]string{}
	}
	x.Notes[path] = note
}

func (r *Results) get(f figName, path string) (float64, bool) {
	for _, x := range r.Figures {
		if x.Scenario == f.scenario && x.Metric == f.metric {
			v, ok := x.Values[path]
			return v, ok
		}
	}
	return 0, false
}

// ms and us convert durations to the units figures use.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// finish fills in ratios to direct and to proxy2 and checks the targets.
func (r *Results) finish(paths []*path) {
	for _, f := range r.Figures {
		f.Ratios = ratiosTo(f, "direct")
		f.RatiosProxy2 = ratiosTo(f, "proxy2")
	}
	for _, p := range paths {
		if p.kind == kindDirect {
			continue
		}
		r.Targets = append(r.Targets, r.targets(p)...)
	}
}

// ratiosTo divides each of f's values by ref's, or returns nil when ref
// has none (or zero), and for connection counts.
func ratiosTo(f *Figure, ref string) map[string]float64 {
	d, ok := f.Values[ref]
	if !ok || d == 0 || f.Unit == "conns" {
		return nil
	}
	rs := map[string]float64{}
	for p, v := range f.Values {
		if p != ref {
			rs[p] = v / d
		}
	}
	return rs
}

// targets checks the goals of issues 5 and 16 for an adit path p, for the
// figures that ran. Issue 16's ratios to proxy2 replaced issue 5's
// throughput ratios to direct.
func (r *Results) targets(p *path) []Target {
	var ts []Target
	if p.kind == kindDirect || p.kind == kindProxy2 {
		return nil
	}
	add := func(goal, got string, met bool) {
		ts = append(ts, Target{Path: p.name, Goal: goal, Got: got, Met: met})
	}
	c := r.closestConcurrency(50)
	if v, ref, ok := r.pairWith(figGet(c, cpuMetric("hops")), p.name, "proxy2"); ok {
		add(fmt.Sprintf("GET 1KiB c=%d hops CPU ≤ 0.5× proxy2's", c), fmt.Sprintf("%.2f×", v/ref), v <= 0.5*ref)
	}
	if v, ref, ok := r.pairWith(figGet(c, "req/s"), p.name, "proxy2"); ok {
		add(fmt.Sprintf("GET 1KiB c=%d req/s ≥ 2× proxy2", c), fmt.Sprintf("%.2f×", v/ref), v >= 2*ref)
	}
	if v, ref, ok := r.pairWith(figGet(c, "p99"), p.name, "proxy2"); ok {
		add(fmt.Sprintf("GET 1KiB c=%d p99 ≤ proxy2's", c), fmt.Sprintf("%.2f×", v/ref), v <= ref)
	}
	if v, d, ok := r.pair(figGet(1, "p50"), p.name); ok {
		add("GET 1KiB c=1 median adds < 300µs", fmt.Sprintf("+%.0fµs", v-d), v-d < 300)
	}
	for _, f := range []figName{r.figDownload(), r.figUpload()} {
		if v, d, ok := r.pair(f, p.name); ok {
			add(f.scenario+" MB/s ≥ 0.5× direct", fmt.Sprintf("%.2f×", v/d), v >= 0.5*d)
		}
		limit := map[string]float64{"quic": 2, "websocket": 1.2}[p.protocol]
		if v, ok := r.get(figName{f.scenario, cpuMetric("hops")}, p.name); ok && limit > 0 {
			add(fmt.Sprintf("%s edge+connector CPU < %.1f s/GB", f.scenario, limit), fmt.Sprintf("%.2f s/GB", v), v < limit)
		}
	}
	if v, ok := r.get(r.figRate("connector RSS"), p.name); ok {
		got := fmt.Sprintf("%.1f MB", v)
		if anon, ok := r.get(r.figRate("connector RSS anon"), p.name); ok {
			got += fmt.Sprintf(" (%.1f MB anon)", anon)
		}
		add(fmt.Sprintf("connector RSS < 30 MB at %d req/s", r.Settings.Rate), got, v < 30)
	}
	for _, side := range []string{"edge", "connector"} {
		if v, ok := r.get(r.figIdle(side+" per conn"), p.name); ok {
			add("idle WebSocket < 20 KiB per conn, "+side, fmt.Sprintf("%.1f KiB", v), v < 20)
		}
	}
	return ts
}

func (r *Results) pair(f figName, path string) (v, direct float64, ok bool) {
	return r.pairWith(f, path, "direct")
}

// pairWith returns path's value of f and the reference path ref's.
func (r *Results) pairWith(f figName, path, ref string) (v, refV float64, ok bool) {
	v, ok1 := r.get(f, path)
	refV, ok2 := r.get(f, ref)
	return v, refV, ok1 && ok2 && refV > 0
}

func (r *Results) closestConcurrency(want int) int {
	best := 0
	for _, c := range r.Settings.Concurrency {
		if best == 0 || abs(c-want) < abs(best-want) {
			best = c
		}
	}
	return best
}

func abs(x int) int { return max(x, -x) }

func figGet(c int, metric string) figName {
	return figName{fmt.Sprintf("GET 1KiB c=%d", c), metric}
}

func (r *Results) figDownload() figName {
	return figName{"download " + sizeString(r.Settings.BigSize), "MB/s"}
}

func (r *Results) figUpload() figName {
	return figName{"upload " + sizeString(r.Settings.BigSize), "MB/s"}
}

func (r *Results) figRate(metric string) figName {
	return figName{fmt.Sprintf("fixed %d req/s", r.Settings.Rate), metric}
}

func (r *Results) figIdle(metric string) figName {
	return figName{fmt.Sprintf("%d idle WebSockets", r.Settings.IdleWS), metric}
}

// sizeString writes n bytes as "1GiB", "16MiB", "1KiB" or "123B".
func sizeString(n int64) string {
	for _, u := range []struct {
		s string
		n int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.n && n%u.n == 0 {
			return fmt.Sprintf("%d%s", n/u.n, u.s)
		}
	}
	return fmt.Sprintf("%dB", n)
}

// writeTable prints the results as one table: a row per figure, a column
// per path, each value with its ratio to direct and to proxy2 ("p2"); then
// the targets.
func (r *Results) writeTable(w io.Writer) {
	fmt.Fprintf(w, "adit benchmark, %s, %d CPUs (%s), %s, load average %s before and %s after\n",
		r.Started.Format(time.DateTime), r.Machine.CPUs, r.Machine.CPUModel, r.Machine.GoVersion, r.Machine.LoadStart, r.Machine.LoadEnd)
	if r.Settings.Connector != "" {
		fmt.Fprintf(w, "connectors: `%s tunnel run` (binary %.1f MB); edge: `adit edge` (binary %.1f MB)\n",
			r.Settings.Connector, float64(r.Settings.ConnectorBinaryBytes)/1e6, float64(r.Settings.EdgeBinaryBytes)/1e6)
	}
	switch r.Settings.LoadGen {
	case "wrk":
		fmt.Fprintf(w, "load generator: %s for the small GETs (threads min(c, 2)), the harness's Go client for the rest\n", cmp.Or(r.Settings.LoadGenVersion, "wrk"))
	case "go":
		fmt.Fprintln(w, "load generator: the harness's Go client")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "scenario\tmetric\tunit")
	for _, p := range r.Paths {
		fmt.Fprintf(tw, "\t%s", p.Name)
	}
	fmt.Fprintln(tw)
	for _, f := range r.Figures {
		fmt.Fprintf(tw, "%s\t%s\t%s", f.Scenario, f.Metric, f.Unit)
		for _, p := range r.Paths {
			fmt.Fprintf(tw, "\t%s", cell(f, p))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	var notes []string
	if r.Settings.IdleWSNote != "" {
		notes = append(notes, fmt.Sprintf("idle WebSockets: %d opened: %s", r.Settings.IdleWS, r.Settings.IdleWSNote))
	}
	for _, p := range r.Paths {
		if !p.Available {
			notes = append(notes, fmt.Sprintf("%s: n/a: %s", p.Name, firstLine(p.Reason)))
		}
	}
	for _, f := range r.Figures {
		for _, p := range r.Paths {
			if n, ok := f.Notes[p.Name]; ok && len(n) > 24 {
				notes = append(notes, fmt.Sprintf("* %s %s, %s: %s", f.Scenario, f.Metric, p.Name, firstLine(n)))
			}
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w, "\ntargets (issues 5 and 16):")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, t := range r.Targets {
			mark := "MISSED"
			if t.Met {
				mark = "met"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", t.Path, t.Goal, t.Got, mark)
		}
		tw.Flush()
	}
}

func cell(f *Figure, p PathInfo) string {
	v, ok := f.Values[p.Name]
	if !ok {
		switch n := f.Notes[p.Name]; {
		case !p.Available:
			return "n/a"
		case n == "":
			return "—"
		case len(n) > 24:
			return "(see notes)"
		default:
			return n
		}
	}
	s := formatValue(v)
	ratio, okD := f.Ratios[p.Name]
	ratio2, okP := f.RatiosProxy2[p.Name]
	switch {
	case okD && okP:
		s += fmt.Sprintf(" (%.2f×, p2 %.2f×)", ratio, ratio2)
	case okD:
		s += fmt.Sprintf(" (%.2f×)", ratio)
	case okP:
		s += fmt.Sprintf(" (p2 %.2f×)", ratio2)
	}
	switch n := f.Notes[p.Name]; {
	case len(n) > 24:
		s += " *" // the note is listed below the table
	case n != "":
		s += " [" + n + "]"
	}
	return s
}

func formatValue(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// writeJSON writes the results to path, indented.
func (r *Results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// describeMachine reads what it can about this machine; missing pieces
// stay empty.
func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryMiB = kb >> 10
		}
	}
	m.LoadStart = loadAvg()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		m.Commit = string(bytes.TrimSpace(out))
	}
	return m
}

// loadAvg is the first three fields of /proc/loadavg, or "".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
