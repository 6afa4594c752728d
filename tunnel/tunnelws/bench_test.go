package tunnelws

import (
	"testing"

	"github.com/adit-dev/adit/tunnel/tunneltest"
)

// BenchmarkStreamThroughput: one stream over real TCP, TLS and WebSocket.
func BenchmarkStreamThroughput(b *testing.B) {
	tunneltest.BenchmarkThroughput(b, func(tb testing.TB) tunneltest.Pair { return newPair(tb, Config{}, Config{}) })
}
