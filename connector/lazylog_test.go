package connector

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestWithLazy(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})).With("conn", "c1")
	log := withLazy(base, slog.String("request_id", "r1"))
	log.Debug("hidden")
	log.With("k", "v").Info("shown", "n", 1)
	log.WithGroup("g").Info("grouped", "x", 2)
	got := buf.String()
	for _, want := range []string{"conn=c1 request_id=r1 k=v n=1", "conn=c1 request_id=r1 g.x=2"} {
		if !strings.Contains(got, want) {
			t.Errorf("log %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "hidden") {
		t.Errorf("a debug record was logged at info level: %q", got)
	}
}
