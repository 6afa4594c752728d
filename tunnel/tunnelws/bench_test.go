package tunnelws

import (
	"fmt"
	"io"
	"testing"

	"github.com/adit-dev/adit/tunnel/tunneltest"
)

// BenchmarkStreamThroughput writes size bytes per op on one stream over
// real TCP and TLS; the peer reads and drops them.
func BenchmarkStreamThroughput(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			p := newPair(b, Config{}, Config{})
			ctx := tunneltest.Context(b)
			w, err := p.Client.OpenStream(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			if _, err := w.Write([]byte{0}); err != nil {
				b.Fatal(err)
			}
			r, err := p.Server.AcceptStream(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			read := make(chan int64, 1)
			go func() {
				n, _ := io.Copy(io.Discard, r)
				read <- n
			}()
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			var written int64 = 1
			for b.Loop() {
				n, err := w.Write(buf)
				written += int64(n)
				if err != nil {
					b.Fatal(err)
				}
			}
			w.CloseWrite()
			if n := <-read; n != written {
				b.Fatalf("peer read %d bytes, want %d", n, written)
			}
		})
	}
}
