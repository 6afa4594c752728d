package tunneltest

import (
	"fmt"
	"io"
	"testing"
)

// BenchmarkThroughput writes size bytes per op on one stream of a pair made
// by newPair (a real connection on loopback); the peer reads and drops them.
// Both transports run it, so their figures compare.
func BenchmarkThroughput(b *testing.B, newPair func(testing.TB) Pair) {
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			p := newPair(b)
			ctx := Context(b)
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
