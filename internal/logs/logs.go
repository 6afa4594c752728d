// Package logs names the component a log line comes from, once per
// component: logs.Component(log, "edge") returns a logger whose lines carry
// component=edge, so messages need no "edge: " typed into them.
//
// A component hands its own logger to the parts it builds (the edge to its
// WAF, the connector to its origins), and each part names itself again; the
// part's name replaces the one it was given, never stacks beside it, while
// every other attribute (tunnel=, remote=) is kept.
package logs

import (
	"context"
	"log/slog"
)

// Key is the attribute that names the component.
const Key = "component"

// Component returns log with its component set to name, replacing a component
// set before by Component. A nil log gives a logger that discards.
func Component(log *slog.Logger, name string) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	base := log.Handler()
	if h, ok := base.(*handler); ok {
		base = h.base
	}
	return slog.New(&handler{base: base, named: base.WithAttrs([]slog.Attr{slog.String(Key, name)})})
}

// handler keeps two views of one handler: base without the component (so a
// later Component can replace it) and named with it (what lines go to).
// Attributes and groups added later go to both.
type handler struct {
	base, named slog.Handler
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.named.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error { return h.named.Handle(ctx, r) }

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{base: h.base.WithAttrs(as), named: h.named.WithAttrs(as)}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{base: h.base.WithGroup(name), named: h.named.WithGroup(name)}
}
