package connector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/tunnel"
)

// fakeEdge stands in for serveConn in the supervisor tests. It models
// what matters for reconnecting: a dial to an edge that is down gets no
// answer for the 2s handshake timeout, but quic-go resends its Initial at
// about 0.2, 0.6 and 1.4s, so an edge that comes back during a dial is
// reached at the next resend. It runs in a synctest bubble, as do the
// tests: every time.Sleep here and in them is simulated time passing
// (a round trip, an outage), which advances the fake clock at once.
type fakeEdge struct {
	mu       sync.Mutex
	state    string        // "up", "down" or "refuse"
	changed  chan struct{} // closed and replaced on every state change
	attempts map[int]int   // by connection index
	reg      map[int]time.Time
}

func newFakeEdge(state string) *fakeEdge {
	return &fakeEdge{state: state, changed: make(chan struct{}), attempts: map[int]int{}, reg: map[int]time.Time{}}
}

func (e *fakeEdge) set(state string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.state = state
	close(e.changed)
	e.changed = make(chan struct{})
}

func (e *fakeEdge) get() (string, <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state, e.changed
}

func (e *fakeEdge) registrations() map[int]time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := make(map[int]time.Time, len(e.reg))
	for k, v := range e.reg {
		m[k] = v
	}
	return m
}

func (e *fakeEdge) attemptsBy(index int) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.attempts[index]
}

func (e *fakeEdge) serve(ctx context.Context, index int, addr string, log *slog.Logger, at *attempt) error {
	e.mu.Lock()
	e.attempts[index]++
	e.mu.Unlock()
	start := time.Now()
	state, _ := e.get()
	for _, resend := range []time.Duration{200 * time.Millisecond, 600 * time.Millisecond, 1400 * time.Millisecond, 2 * time.Second} {
		if state != "down" {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(start.Add(resend))):
		}
		state, _ = e.get()
	}
	if state == "down" {
		return errors.New("quic: dial: timeout: no recent network activity")
	}
	time.Sleep(time.Millisecond) // a round trip
	if state == "refuse" {
		return &refusal{errors.New("edge refused the connection: edge cannot check the tunnel now")}
	}
	e.mu.Lock()
	e.reg[index] = time.Now()
	e.mu.Unlock()
	at.setRegistered("edge-test")
	for {
		state, changed := e.get()
		if state != "up" {
			return &tunnel.CloseError{Code: tunnel.CodeShutdown, Reason: "edge shutting down", Remote: true}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

func newTestConnector(t *testing.T, ha int, e *fakeEdge) *Connector {
	t.Helper()
	ing, err := ingress.FromURL("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{
		TunnelID:      "6ff42ae2-765d-4adf-8112-31c55c1551ef",
		Secret:        []byte("secret"),
		EdgeAddrs:     []string{"edge.test:7844"},
		Ingress:       ing,
		HAConnections: ha,
	})
	if err != nil {
		t.Fatal(err)
	}
	c.serveFn = e.serve
	return c
}

// runConnector runs c until the test's bubble ends it.
func runConnector(t *testing.T, c *Connector) (stop func() error) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

// TestReconnectAfterOutage: after an edge restart or a network outage of
// any length, every HA connection is registered again within 2s of the
// edge being back, and during the outage only the prober keeps trying
// often.
func TestReconnectAfterOutage(t *testing.T) {
	outages := []time.Duration{
		700 * time.Millisecond, 1300 * time.Millisecond, 2100 * time.Millisecond,
		3700 * time.Millisecond, 11*time.Second + 900*time.Millisecond,
		47 * time.Second, 10 * time.Minute, 10*time.Minute + 1300*time.Millisecond,
	}
	for _, outage := range outages {
		t.Run(fmt.Sprint(outage), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const ha = 4
				e := newFakeEdge("up")
				c := newTestConnector(t, ha, e)
				stop := runConnector(t, c)
				defer stop()
				time.Sleep(10 * time.Millisecond)
				if n := len(e.registrations()); n != ha {
					t.Fatalf("at start: %d connections registered, want %d", n, ha)
				}

				e.set("down")
				time.Sleep(outage)
				probes, others := e.attemptsBy(0), 0
				for i := 1; i < ha; i++ {
					others += e.attemptsBy(i)
				}
				back := time.Now()
				e.set("up")
				time.Sleep(5 * time.Second)

				var worst time.Duration
				defer func() { t.Logf("after a %v outage: every connection registered within %v", outage, worst) }()
				for i := range ha {
					reg, ok := e.registrations()[i]
					if !ok || reg.Before(back) {
						t.Errorf("connection %d: not registered again after the outage", i)
						continue
					}
					took := reg.Sub(back)
					worst = max(worst, took)
					if took > 2*time.Second {
						t.Errorf("connection %d: registered %v after the edge was back, want at most 2s", i, took)
					}
				}
				if outage >= 10*time.Minute {
					// The prober dials about every 2.5s; the three others
					// back off to RetryMax (30s).
					perOther := float64(others) / (ha - 1)
					t.Logf("during a %v outage: %d prober attempts, %.0f per other connection", outage, probes, perOther)
					if perOther > float64(probes)/4 {
						t.Errorf("other connections made %.0f attempts each, the prober %d; want them to back off", perOther, probes)
					}
				}
			})
		})
	}
}

// TestRefusalsBackOff: an edge that answers but refuses is retried with
// exponential backoff up to RetryMax, not every ReconnectDelay.
func TestRefusalsBackOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newFakeEdge("refuse")
		c := newTestConnector(t, 2, e)
		stop := runConnector(t, c)
		defer stop()
		const period = 5 * time.Minute
		time.Sleep(period)
		for i := range 2 {
			// 1, 2, 4, 8, 16s, then 30s: jittered to [d/2, d], between
			// 5+300/30 and 10+300/15 attempts.
			n := e.attemptsBy(i)
			if n < 12 || n > 32 {
				t.Errorf("connection %d: %d attempts in %v of refusals, want between 12 and 32", i, n, period)
			}
		}
		e.set("up")
		time.Sleep(c.cfg.RetryMax + time.Second)
		if n := len(e.registrations()); n != 2 {
			t.Errorf("after the edge accepts: %d connections, want 2", n)
		}
	})
}

// TestAuthErrorEndsRun: a permanent refusal ends Run with ErrAuth at once.
func TestAuthErrorEndsRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newFakeEdge("up")
		c := newTestConnector(t, 2, e)
		c.serveFn = func(ctx context.Context, index int, addr string, log *slog.Logger, at *attempt) error {
			return fmt.Errorf("%w for tunnel x: wrong secret", ErrAuth)
		}
		err := c.Run(t.Context())
		if !errors.Is(err, ErrAuth) {
			t.Errorf("Run: got %v, want ErrAuth", err)
		}
	})
}

func TestClassify(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want failureKind
	}{
		{"dial timeout", errors.New("quic: dial: timeout: no recent network activity"), failTransport},
		{"registration refused", &refusal{errors.New("edge refused the connection")}, failRefused},
		{"registration answer garbled", &refusal{errors.New("reading the registration answer: tunnel: got data frame")}, failRefused},
		{"died while registering", errors.New("reading the registration answer: timeout: no recent network activity"), failTransport},
		{"edge shut down", &tunnel.CloseError{Code: tunnel.CodeShutdown, Remote: true}, failTransport},
		{"cleanup", &tunnel.CloseError{Code: tunnel.CodeRemoved, Remote: true}, failTransport},
		{"closed for a protocol error", &tunnel.CloseError{Code: tunnel.CodeProtocol, Remote: true}, failRefused},
		{"we closed it", &tunnel.CloseError{Code: tunnel.CodeNormal, Reason: "edge restarted"}, failTransport},
	}
	for _, c := range cases {
		if got := classify(c.err); got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, got, c.want)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	for attempt := range 10 {
		d := time.Second << attempt
		if d > 30*time.Second {
			d = 30 * time.Second
		}
		for range 100 {
			if got := backoff(time.Second, 30*time.Second, attempt); got < d/2 || got > d {
				t.Fatalf("backoff(attempt %d) = %v, want in [%v, %v]", attempt, got, d/2, d)
			}
		}
	}
	for range 100 {
		if got := jitter(500 * time.Millisecond); got < 250*time.Millisecond || got > 750*time.Millisecond {
			t.Fatalf("jitter(500ms) = %v, want in [250ms, 750ms]", got)
		}
	}
}

// TestBusyWaitsRetryAfter: an edge that refuses a registration for now
// with retry_after_ms (admission control) is asked again after that delay
// plus at most half again, not sooner, even when a sibling registers.
func TestBusyWaitsRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const after = 4 * time.Second
		var mu sync.Mutex
		tries := map[int][]time.Time{}
		e := newFakeEdge("up")
		c := newTestConnector(t, 4, e)
		c.serveFn = func(ctx context.Context, index int, addr string, log *slog.Logger, at *attempt) error {
			mu.Lock()
			tries[index] = append(tries[index], time.Now())
			n := len(tries[index])
			mu.Unlock()
			if index > 0 && n == 1 {
				return &refusal{&busyError{reason: "edge busy", after: after}}
			}
			return e.serve(ctx, index, addr, log, at)
		}
		stop := runConnector(t, c)
		defer stop()
		time.Sleep(after*3/2 + time.Second)
		mu.Lock()
		defer mu.Unlock()
		for i := 1; i < 4; i++ {
			if len(tries[i]) != 2 {
				t.Errorf("connection %d: %d attempts, want 2", i, len(tries[i]))
				continue
			}
			if d := tries[i][1].Sub(tries[i][0]); d < after || d > after*3/2 {
				t.Errorf("connection %d: asked again after %v, want within [%v, %v]", i, d, after, after*3/2)
			}
		}
		if n := len(e.registrations()); n != 4 {
			t.Errorf("%d connections registered, want 4", n)
		}
	})
}

// TestQUICDoubt: QUIC failing while TCP works makes "auto" fall back at
// once for an edge QUIC never worked to, but for one it worked to only
// once the evidence has lasted; an edge down (TCP failing too) starts the
// count over.
func TestQUICDoubt(t *testing.T) {
	const a = "edge.test:7844"
	start := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	type step struct {
		at       time.Duration
		what     string // "doubt", "tcp down", "quic works"
		fallBack bool   // for "doubt"
	}
	cases := []struct {
		name   string
		worked bool
		steps  []step
	}{
		{"never worked", false, []step{{0, "doubt", true}}},
		{"restart", true, []step{{0, "doubt", false}, {2 * time.Second, "doubt", false}, {3 * time.Second, "quic works", false}, {25 * time.Second, "doubt", false}}},
		{"UDP blocked since", true, []step{{0, "doubt", false}, {10 * time.Second, "doubt", false}, {15 * time.Second, "doubt", false}, {20 * time.Second, "doubt", true}}},
		{"edge down between", true, []step{{0, "doubt", false}, {10 * time.Second, "doubt", false}, {15 * time.Second, "tcp down", false}, {21 * time.Second, "doubt", false}, {30 * time.Second, "doubt", false}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var ts transportState
			if tc.worked {
				ts.quicWorked(a)
			}
			for i, s := range tc.steps {
				switch s.what {
				case "tcp down":
					ts.tcpFailed(a)
				case "quic works":
					ts.quicWorked(a)
				case "doubt":
					if got, times, _ := ts.doubt(a, start.Add(s.at)); got != s.fallBack {
						t.Errorf("step %d (at %v, %d in a row): fall back %v, want %v", i, s.at, times, got, s.fallBack)
					}
				}
			}
		})
	}
}
