package shield

import (
	"encoding/json"
	"log/slog"
	"testing"
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
