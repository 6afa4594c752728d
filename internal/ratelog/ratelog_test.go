package ratelog

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// lines returns the records written to buf, one per line.
func lines(buf *bytes.Buffer) []string {
	s := strings.TrimSpace(buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func newTestLogger(buf *bytes.Buffer, l *Limiter) *slog.Logger {
	h := slog.NewTextHandler(buf, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	})
	return l.Logger(slog.New(h))
}

func TestOncePerInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		log := newTestLogger(&buf, NewLimiter(10*time.Second))
		for i := range 100 {
			log.Warn("bad frame", "remote", fmt.Sprintf("10.0.0.%d:1", i))
		}
		log.Warn("other kind")
		if got := lines(&buf); len(got) != 2 {
			t.Fatalf("within one interval: got %d lines, want 2 (one per kind):\n%s", len(got), buf.String())
		}

		time.Sleep(9 * time.Second)
		log.Warn("bad frame")
		if got := lines(&buf); len(got) != 2 {
			t.Fatalf("before the interval ends: got %d lines, want 2:\n%s", len(got), buf.String())
		}

		time.Sleep(time.Second)
		log.Warn("bad frame", "remote", "10.0.0.200:1")
		got := lines(&buf)
		if len(got) != 3 {
			t.Fatalf("after the interval: got %d lines, want 3:\n%s", len(got), buf.String())
		}
		if want := SuppressedKey + "=100"; !strings.Contains(got[2], want) {
			t.Errorf("line after the interval: got %q, want it to contain %q", got[2], want)
		}
		if !strings.Contains(got[2], "remote=10.0.0.200:1") {
			t.Errorf("line after the interval lost its own attributes: %q", got[2])
		}

		time.Sleep(10 * time.Second)
		log.Warn("bad frame")
		if got := lines(&buf); strings.Contains(got[3], SuppressedKey) {
			t.Errorf("nothing was suppressed, but the line says so: %q", got[3])
		}
	})
}

// TestDerivedLoggersShareLimits: loggers made with With, and loggers made
// from different base loggers, share one Limiter's budget.
func TestDerivedLoggersShareLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		l := NewLimiter(time.Minute)
		base := slog.New(slog.NewTextHandler(&buf, nil))
		a := l.Logger(base.With("conn", "a"))
		b := l.Logger(base).With("conn", "b")
		c := l.Logger(l.Logger(base)) // wrapping twice must not double-count
		a.Info("registration failed")
		b.Info("registration failed")
		c.Info("registration failed")
		if got := lines(&buf); len(got) != 1 {
			t.Errorf("got %d lines, want 1:\n%s", len(got), buf.String())
		}
		time.Sleep(time.Minute)
		c.Info("registration failed")
		if got := lines(&buf); len(got) != 2 || !strings.Contains(got[1], SuppressedKey+"=2") {
			t.Errorf("got %q, want a second line with %s=2", got, SuppressedKey)
		}
	})
}

// TestManyKinds: varying messages do not grow the limiter without bound.
func TestManyKinds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		l := NewLimiter(time.Second)
		log := newTestLogger(&buf, l)
		for i := range 3 * maxKinds {
			log.Warn(fmt.Sprintf("accept error from 10.0.%d.%d", i/256, i%256))
		}
		l.mu.Lock()
		n := len(l.kinds)
		l.mu.Unlock()
		if n > maxKinds+1 {
			t.Errorf("limiter holds %d kinds, want at most %d (and the overflow kind)", n, maxKinds)
		}
		if got := len(lines(&buf)); got > maxKinds+1 {
			t.Errorf("got %d lines, want at most %d", got, maxKinds+1)
		}
		// Once the interval is over, old kinds make room again.
		time.Sleep(time.Second)
		log.Warn("a new kind")
		if got := lines(&buf); !strings.Contains(got[len(got)-1], "a new kind") {
			t.Errorf("last line %q, want the new kind logged", got[len(got)-1])
		}
	})
}

func TestConcurrent(t *testing.T) {
	var buf syncWriter
	log := slog.New(NewLimiter(time.Hour).Handler(slog.NewTextHandler(&buf, nil)))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				log.Error("noisy")
			}
		})
	}
	wg.Wait()
	if got := strings.Count(buf.String(), "noisy"); got != 1 {
		t.Errorf("got %d lines, want 1", got)
	}
}

func TestNilLogger(t *testing.T) {
	NewLimiter(0).Logger(nil).Info("discarded") // must not panic
}

type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
