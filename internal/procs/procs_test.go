package procs

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestGovernor(t *testing.T) {
	cfg := Config{}.withDefaults() // Up 0.9, QueueUp 0.25, Down 0.35, DownAfter 2s
	t0 := time.Unix(1000, 0)
	type sample struct {
		ms         int
		use, queue float64
		want       change
	}
	tests := []struct {
		name    string
		samples []sample
	}{
		{"busy stays on the default", []sample{{0, 0.9, 0, stay}, {250, 1.2, 0, stay}, {2500, 0.5, 0, stay}}},
		{"idle for DownAfter goes to one P", []sample{{0, 0.1, 0, stay}, {1000, 0.2, 0, stay}, {2000, 0.1, 0, toOne}, {2250, 0.1, 0, stay}}},
		{"a busy sample restarts the wait", []sample{{0, 0.1, 0, stay}, {1750, 0.5, 0, stay}, {2000, 0.1, 0, stay}, {3750, 0.1, 0, stay}, {4000, 0.1, 0, toOne}}},
		{"a queue on the default changes nothing", []sample{{0, 0.1, 3, stay}, {2000, 0.1, 3, toOne}}},
		{"one P goes up above Up at once", []sample{{0, 0.1, 0, stay}, {2000, 0.1, 0, toOne}, {2250, 0.85, 0, stay}, {2500, 0.95, 0, toDefault}, {2750, 0.1, 0, stay}}},
		{"one P goes up when work queues", []sample{{0, 0.1, 0, stay}, {2000, 0.1, 0, toOne}, {2250, 0.6, 0.06, stay}, {2500, 0.6, 0.7, toDefault}}},
		{"between Down and Up, a short queue: nothing changes", []sample{{0, 0.1, 0, stay}, {2000, 0.1, 0, toOne}, {2250, 0.5, 0.05, stay}, {5000, 0.8, 0.2, stay}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := governor{cfg: cfg}
			for i, s := range tt.samples {
				now := t0.Add(time.Duration(s.ms) * time.Millisecond)
				if got := g.observe(now, s.use, s.queue); got != s.want {
					t.Fatalf("sample %d (%d ms, %.2f cores, queue %.2f): got %d, want %d", i, s.ms, s.use, s.queue, got, s.want)
				}
			}
		})
	}
}

func TestSchedQueue(t *testing.T) {
	var q schedQueue
	q.sample()
	// More goroutines than Ps, each yielding: each waits to run again.
	var wg sync.WaitGroup
	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for range 2000 {
				runtime.Gosched()
			}
		})
	}
	wg.Wait()
	if got := q.sample(); got <= 0 {
		t.Errorf("waited to run while goroutines queued: got %v, want > 0", got)
	}
}

// changes is a slog handler that passes on the messages it gets.
type changes chan string

func (c changes) Enabled(context.Context, slog.Level) bool { return true }
func (c changes) Handle(_ context.Context, r slog.Record) error {
	c <- r.Message
	return nil
}
func (c changes) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c changes) WithGroup(string) slog.Handler      { return c }

func TestAdaptAndRestore(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" || runtime.GOMAXPROCS(0) <= 1 {
		t.Skip("GOMAXPROCS is set or the default is 1: Adapt stays off")
	}
	want := runtime.GOMAXPROCS(0)
	log := make(changes, 4)
	ctx, cancel := context.WithCancel(context.Background())
	// Every sample is "idle": one P after the first two.
	if !Adapt(ctx, Config{Interval: 5 * time.Millisecond, Down: 1000, Up: 2000, QueueUp: 2000,
		DownAfter: time.Nanosecond, Logger: slog.New(log)}) {
		t.Fatal("Adapt: got false, want it to run")
	}
	if msg := <-log; msg != "light load: one P" {
		t.Fatalf("first change: got %q", msg)
	}
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Errorf("GOMAXPROCS on light load: got %d, want 1", got)
	}
	cancel()
	if msg := <-log; msg != "stopped: default GOMAXPROCS" {
		t.Fatalf("at the end: got %q", msg)
	}
	if got := runtime.GOMAXPROCS(0); got != want {
		t.Errorf("GOMAXPROCS after the end: got %d, want the default %d", got, want)
	}
}

func TestAdaptRespectsEnvironment(t *testing.T) {
	t.Setenv("GOMAXPROCS", "2")
	want := runtime.GOMAXPROCS(0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if Adapt(ctx, Config{Interval: time.Millisecond, Down: 1000, DownAfter: time.Nanosecond}) {
		t.Error("Adapt: got true with GOMAXPROCS set, want it to stay off")
	}
	if got := runtime.GOMAXPROCS(0); got != want {
		t.Errorf("GOMAXPROCS: got %d, want %d (set in the environment)", got, want)
	}
}
