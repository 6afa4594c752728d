package procs

import (
	"context"
	"os"
	"runtime"
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
	// Keep more goroutines runnable than there are Ps for a while.
	done := make(chan struct{})
	for range 4 * runtime.GOMAXPROCS(0) {
		go func() {
			for {
				select {
				case <-done:
					return
				default:
					runtime.Gosched()
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	close(done)
	if got := q.sample(); got <= 0 {
		t.Errorf("waited to run while goroutines queued: got %v, want > 0", got)
	}
}

func TestAdaptAndRestore(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" || runtime.GOMAXPROCS(0) <= 1 {
		t.Skip("GOMAXPROCS is set or the default is 1: Adapt stays off")
	}
	want := runtime.GOMAXPROCS(0)
	ctx, cancel := context.WithCancel(context.Background())
	// Every sample is "idle": one P after the first two.
	Adapt(ctx, Config{Interval: 5 * time.Millisecond, Down: 1000, Up: 2000, DownAfter: time.Nanosecond})
	waitFor(t, "one P", func() bool { return runtime.GOMAXPROCS(0) == 1 })
	cancel()
	waitFor(t, "the default back", func() bool { return runtime.GOMAXPROCS(0) == want })
}

func TestAdaptRespectsEnvironment(t *testing.T) {
	t.Setenv("GOMAXPROCS", "2")
	want := runtime.GOMAXPROCS(0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	Adapt(ctx, Config{Interval: time.Millisecond, Down: 1000, DownAfter: time.Nanosecond})
	time.Sleep(50 * time.Millisecond) // what Adapt would have done by now, it must not do
	if got := runtime.GOMAXPROCS(0); got != want {
		t.Errorf("GOMAXPROCS: got %d, want %d (set in the environment)", got, want)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
