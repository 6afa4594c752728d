package shield

import (
	"math"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/adit-dev/adit/edge/layer"
)

func TestWaitQuantile(t *testing.T) {
	// Buckets in seconds: [-Inf,0) [0,1ms) [1ms,2ms) [2ms,4ms) [4ms,+Inf).
	buckets := []float64{math.Inf(-1), 0, 0.001, 0.002, 0.004, math.Inf(1)}
	tests := []struct {
		name      string
		prev, cur []uint64
		q         float64
		want      time.Duration
		wantN     uint64
	}{
		{"no events", []uint64{0, 5, 5, 5, 5}, []uint64{0, 5, 5, 5, 5}, 0.9, 0, 0},
		{"all short", []uint64{0, 0, 0, 0, 0}, []uint64{0, 100, 0, 0, 0}, 0.9, 0, 100},
		{"the tenth waits 2ms", []uint64{0, 0, 0, 0, 0}, []uint64{0, 80, 10, 10, 0}, 0.9, 2 * time.Millisecond, 100},
		{"a ninth of them is not a tenth", []uint64{0, 0, 0, 0, 0}, []uint64{0, 81, 10, 9, 0}, 0.9, time.Millisecond, 100},
		{"only the new events count", []uint64{0, 1000, 0, 0, 0}, []uint64{0, 1000, 0, 50, 50}, 0.9, 4 * time.Millisecond, 100},
		{"a count that went down counts as none", []uint64{0, 1000, 0, 0, 0}, []uint64{0, 10, 0, 10, 0}, 0.5, 2 * time.Millisecond, 10},
		{"below zero is zero", []uint64{0, 0, 0, 0, 0}, []uint64{10, 0, 0, 0, 0}, 0.9, 0, 10},
		{"past the last bound", []uint64{0, 0, 0, 0, 0}, []uint64{0, 0, 0, 0, 10}, 0.9, 4 * time.Millisecond, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n := waitQuantile(buckets, tt.prev, tt.cur, tt.q)
			if got != tt.want || n != tt.wantN {
				t.Errorf("got %v over %d events, want %v over %d", got, n, tt.want, tt.wantN)
			}
		})
	}
}

// The real histogram reads: a baseline first, then the events since.
func TestSchedWaitRead(t *testing.T) {
	s := newSchedWait()
	if _, n := s.read(0.9); n != 0 {
		t.Errorf("first read: %d events, want 0 (the baseline)", n)
	}
	done := make(chan struct{})
	for range 100 {
		go func() { done <- struct{}{} }()
	}
	for range 100 {
		<-done
	}
	if _, n := s.read(0.9); n == 0 {
		t.Error("after 100 goroutines ran: no scheduling events read")
	}
}

// The edge is contended while its goroutines wait for a CPU, and for
// ContendedFor after: an address served more than twice what the others
// send is shed then, not before nor after.
func TestFloodContendedByWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var wait atomic.Int64   // the p90 the fake runtime reports
		var events atomic.Int64 // over this many events
		waits := func(float64) (time.Duration, uint64) {
			return time.Duration(wait.Load()), uint64(events.Load())
		}
		f, err := newFlood(layer.Deps{Logger: discard}, FloodConfig{MaxInflightPerAddr: 100, MinRatePerAddr: 5}, waits)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		h := f.Wrap(layer.HandlerFunc(func(w http.ResponseWriter, r *http.Request, req *layer.Request) {}))
		send := sender(h)
		// burst sends 5 requests from a light address and 20 from a
		// heavy one, and returns how many of the heavy one's were shed.
		burst := func() (shed int) {
			for range 5 {
				if c := send("192.0.2.2"); c != 200 {
					t.Errorf("the light address: got %d, want 200", c)
				}
			}
			for range 20 {
				if send("192.0.2.1") != 200 {
					shed++
				}
			}
			return shed
		}
		tick := func(d time.Duration, n int64) {
			wait.Store(int64(d))
			events.Store(n)
			time.Sleep(waitEvery)
			synctest.Wait()
		}
		steps := []struct {
			name     string
			wait     time.Duration
			events   int64
			after    time.Duration // more time passes before the burst
			wantShed bool
		}{
			{"short waits", time.Millisecond, 1000, 0, false},
			{"long waits, too few to tell", 5 * time.Millisecond, waitMinEvents - 1, 0, false},
			{"long waits", 5 * time.Millisecond, 1000, 0, true},
			{"short waits again, within ContendedFor", 0, 1000, 8 * time.Second, true},
			{"past ContendedFor", 0, 1000, 3 * time.Second, false},
		}
		for _, st := range steps {
			tick(st.wait, st.events)
			time.Sleep(st.after)
			time.Sleep(time.Second) // the last burst's second is over
			if shed := burst(); (shed > 0) != st.wantShed {
				t.Errorf("%s: %d of the heavy address's 20 shed, want shed: %v", st.name, shed, st.wantShed)
			}
		}
	})
}

// ContendedWait -1 leaves the saturation to MaxInflight alone.
func TestFloodContendedWaitOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		waits := func(float64) (time.Duration, uint64) { return time.Second, 1000 }
		f, err := newFlood(layer.Deps{Logger: discard}, FloodConfig{MinRatePerAddr: 5, ContendedWait: -1}, waits)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		time.Sleep(time.Second)
		synctest.Wait()
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.contendedUntil != 0 {
			t.Error("with ContendedWait -1, long waits made the edge contended")
		}
	})
}
