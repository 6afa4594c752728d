package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"
)

// Results is what a run measured, in the order measured.
type Results struct {
	Settings Settings `json:"settings"`
	Figures  []Figure `json:"figures"`
}

// Settings are the run's conditions.
type Settings struct {
	Tunnels  int       `json:"tunnels"`
	Conns    int       `json:"conns_per_tunnel"`
	Routes   int       `json:"routes"`
	Procs    int       `json:"connector_procs"`
	Addrs    int       `json:"bind_addrs"`
	Protocol string    `json:"protocol"`
	Workers  int       `json:"api_workers"`
	Quiet    string    `json:"quiet_window"`
	Rate     int       `json:"rate"`
	CPUs     int       `json:"cpus"`
	Load     string    `json:"loadavg_at_start"`
	LoadEnd  string    `json:"loadavg_at_end"`
	Start    time.Time `json:"start"`
}

// Figure is one measured value; Note says how it was taken or why it is
// missing.
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	Note  string  `json:"note,omitempty"`
}

func (r *Results) add(name string, value float64, unit, note string) {
	r.Figures = append(r.Figures, Figure{name, value, unit, note})
}

func (r *Results) print(w io.Writer) {
	s := r.Settings
	fmt.Fprintf(w, "adit scale: %d tunnels × %d %s connections (%d processes, %d addresses), %d routes; %d CPUs, load %s at the start, %s at the end\n",
		s.Tunnels, s.Conns, s.Protocol, s.Procs, s.Addrs, s.Routes, s.CPUs, s.Load, s.LoadEnd)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, f := range r.Figures {
		fmt.Fprintf(tw, "%s\t %s\t %s\t  %s\n", f.Name, format(f.Value), f.Unit, f.Note)
	}
	tw.Flush()
}

func format(v float64) string {
	switch {
	case v >= 100 || v <= -100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1 || v <= -1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.4f", v)
	}
}

func (r *Results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("scale: %w", err)
	}
	return nil
}
