package connector

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestLogRequests: with Config.LogRequests a served request is an info
// line; without, it is only seen at debug level.
func TestLogRequests(t *testing.T) {
	for _, on := range []bool{false, true} {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})).With("request_id", "r1")
		c := &Connector{cfg: Config{LogRequests: on}}
		c.served(log, "GET", "/x", 200)
		got := strings.Contains(buf.String(), `level=INFO msg=served request_id=r1 method=GET path=/x status=200`)
		if got != on {
			t.Errorf("LogRequests=%v: info log %q", on, buf.String())
		}
	}
}
