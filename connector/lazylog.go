package connector

import (
	"context"
	"log/slog"
	"slices"
)

// withLazy is log.With(attrs...) for a per-request logger that usually
// logs nothing: the attributes are handed to the handler only when a record
// is actually logged, so the request path does not pay a text handler's
// formatting of them on every request.
func withLazy(log *slog.Logger, attrs ...slog.Attr) *slog.Logger {
	l := &lazyAttrs{h: log.Handler()}
	l.attrs = append(l.inline[:0], attrs...) // attrs itself stays on the caller's stack
	return slog.New(l)
}

type lazyAttrs struct {
	h      slog.Handler
	attrs  []slog.Attr
	inline [2]slog.Attr // attrs, when they fit
}

func (l *lazyAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l *lazyAttrs) Handle(ctx context.Context, r slog.Record) error {
	return l.h.WithAttrs(l.attrs).Handle(ctx, r)
}

func (l *lazyAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &lazyAttrs{h: l.h, attrs: append(slices.Clip(l.attrs), attrs...)}
}

func (l *lazyAttrs) WithGroup(name string) slog.Handler {
	return l.h.WithAttrs(l.attrs).WithGroup(name)
}
