// Package ratelog keeps per-connection noise out of the logs: a Limiter lets
// each kind of record through at most once per interval and counts the
// rest, and the next record of that kind that gets through says how many
// were suppressed.
//
// A record's kind is its message, so a log line written from one place in
// the code is one kind whatever its attributes (remote address, request
// ID). Use a Limiter for what hostile or broken peers can trigger at will:
// malformed frames, failed handshakes, refused registrations; log ordinary
// events with the plain logger.
//
//	rl := ratelog.NewLimiter(10 * time.Second)
//	rl.Logger(log).Warn("bad control frame", "remote", addr, "err", err)
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// maxKinds bounds the memory a Limiter uses when messages vary (for
// instance net/http's error log, whose messages carry addresses). Past it,
// records share one more, overflow kind.
const maxKinds = 1024

// overflowKind is the kind of records that found no room of their own.
const overflowKind = "ratelog: other messages"

// SuppressedKey is the attribute that counts the records of a kind left out
// since the last one logged.
const SuppressedKey = "suppressed"

// Limiter decides which records get through. It is safe for concurrent use
// and shared by every logger and handler made from it.
type Limiter struct {
	interval time.Duration
	now      func() time.Time

	mu    sync.Mutex
	kinds map[string]*kind
}

type kind struct {
	last       time.Time // when a record of this kind was last let through
	suppressed int
}

// NewLimiter returns a Limiter that lets each kind through once per
// interval. If interval is zero or negative, 10s.
func NewLimiter(interval time.Duration) *Limiter {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	return &Limiter{interval: interval, now: time.Now, kinds: make(map[string]*kind)}
}

// Logger returns a logger with log's handler and attributes whose records
// go through l. A nil log discards.
func (l *Limiter) Logger(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(l.Handler(log.Handler()))
}

// Handler wraps h so that its records go through l.
func (l *Limiter) Handler(h slog.Handler) slog.Handler {
	if rh, ok := h.(*handler); ok && rh.l == l {
		return h
	}
	return &handler{l: l, h: h}
}

// allow reports whether a record of kind msg may be logged now, and how
// many were suppressed before it.
func (l *Limiter) allow(msg string) (ok bool, suppressed int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.kinds[msg]
	if k == nil {
		if len(l.kinds) >= maxKinds {
			l.prune(now)
		}
		if len(l.kinds) >= maxKinds {
			msg = overflowKind
			k = l.kinds[msg]
		}
		if k == nil {
			k = &kind{}
			l.kinds[msg] = k
			k.last = now
			return true, 0
		}
	}
	if now.Sub(k.last) < l.interval {
		k.suppressed++
		return false, 0
	}
	n := k.suppressed
	k.last, k.suppressed = now, 0
	return true, n
}

// prune forgets kinds that have nothing suppressed and whose interval is
// over: they would be let through anyway.
func (l *Limiter) prune(now time.Time) {
	for m, k := range l.kinds {
		if k.suppressed == 0 && now.Sub(k.last) >= l.interval {
			delete(l.kinds, m)
		}
	}
}

type handler struct {
	l *Limiter
	h slog.Handler
}

func (h *handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.h.Enabled(ctx, level)
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	ok, n := h.l.allow(r.Message)
	if !ok {
		return nil
	}
	if n > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int(SuppressedKey, n))
	}
	return h.h.Handle(ctx, r)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &handler{l: h.l, h: h.h.WithAttrs(attrs)}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{l: h.l, h: h.h.WithGroup(name)}
}
