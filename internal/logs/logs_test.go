package logs

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestComponent(t *testing.T) {
	tests := []struct {
		name string
		log  func(root *slog.Logger) *slog.Logger
		want string
	}{
		{"named once", func(r *slog.Logger) *slog.Logger { return Component(r, "edge") },
			`msg=hello component=edge k=v`},
		{"a part renames, attributes stay", func(r *slog.Logger) *slog.Logger {
			return Component(Component(r, "connector").With("tunnel", "t1"), "origin")
		}, `msg=hello tunnel=t1 component=origin k=v`},
		{"attributes after the name", func(r *slog.Logger) *slog.Logger {
			return Component(r, "edge").With("remote", "1.2.3.4")
		}, `msg=hello component=edge remote=1.2.3.4 k=v`},
		{"groups", func(r *slog.Logger) *slog.Logger { return Component(r, "edge").WithGroup("g") },
			`msg=hello component=edge g.k=v`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			root := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey || a.Key == slog.LevelKey {
						return slog.Attr{}
					}
					return a
				},
			}))
			tc.log(root).Info("hello", "k", "v")
			if got := strings.TrimSpace(buf.String()); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	Component(nil, "x").Info("discarded") // must not panic
}

func TestLevelsPassThrough(t *testing.T) {
	var buf bytes.Buffer
	root := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	l := Component(root, "edge")
	l.Info("dropped")
	l.Warn("kept")
	if s := buf.String(); strings.Contains(s, "dropped") || !strings.Contains(s, "kept") {
		t.Errorf("levels not honoured: %q", s)
	}
}
