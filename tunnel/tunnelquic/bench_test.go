package tunnelquic

import (
	"testing"

	"github.com/adit-dev/adit/tunnel/tunneltest"
)

// BenchmarkStreamThroughput: one stream over real QUIC on loopback UDP.
func BenchmarkStreamThroughput(b *testing.B) {
	tunneltest.BenchmarkThroughput(b, func(tb testing.TB) tunneltest.Pair { return newPair(tb, Config{}, Config{}) })
}
