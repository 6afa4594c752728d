package shield

import (
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/adit-dev/adit/edge/layer"
)

var discard = slog.New(slog.DiscardHandler)

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sender returns a function that sends a GET through h from ip and
// returns the status code.
func sender(h layer.Handler) func(ip string) int {
	return func(ip string) int {
		rec := httptest.NewRecorder()
		h.ServeRouted(rec, httptest.NewRequest("GET", "/", nil), &layer.Request{ClientIP: netip.MustParseAddr(ip)})
		return rec.Code
	}
}
