package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// benchSizes are the response sizes the request benchmarks fetch.
var benchSizes = []int{1 << 10, 64 << 10, 1 << 20}

// benchOrigin serves /bytes?n=N: N bytes with a Content-Length.
func benchOrigin(b *testing.B) *httptest.Server {
	b.Helper()
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = 'a' + byte(i%26)
	}
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 0 {
			http.Error(w, "n: want a byte count", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		for n > 0 {
			k := min(n, len(chunk))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
		}
	}))
	b.Cleanup(o.Close)
	return o
}

// fetch sends a GET to url with Host host (if set) and reads the answer,
// which must be a 200 of want bytes.
func fetch(b *testing.B, url, host string, want int) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		b.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := edgeClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || n != int64(want) {
		b.Fatalf("GET %s: status %d, %d bytes, %v; want 200 and %d bytes", url, resp.StatusCode, n, err, want)
	}
}

// benchFetch runs the request benchmarks against base (with Host host):
// one request at a time per size, and 1 KiB with many requests in flight.
// Allocations are the whole process's: client, edge, connector and
// origin; BenchmarkDirect is the baseline to subtract.
func benchFetch(b *testing.B, base, host string) {
	for _, size := range benchSizes {
		url := fmt.Sprintf("%s/bytes?n=%d", base, size)
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				fetch(b, url, host, size)
			}
		})
	}
	url := base + "/bytes?n=1024"
	b.Run("1KiB-parallel", func(b *testing.B) {
		b.SetBytes(1 << 10)
		b.SetParallelism(25) // 50 requests in flight on 2 CPUs
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				fetch(b, url, host, 1<<10)
			}
		})
	})
}

// BenchmarkProxy is a full request through an in-process edge and
// connector over QUIC on loopback: client → edge → QUIC stream →
// connector → origin and back.
func BenchmarkProxy(b *testing.B) {
	origin := benchOrigin(b)
	srv := startEdge(b, "")
	tun := createTunnel(b, srv, "bench", "bench.test")
	startConnector(b, srv, tun, mustIngress(b, origin.URL))
	benchFetch(b, "http://"+srv.HTTPAddr().String(), "bench.test")
}

// BenchmarkDirect is the baseline: the same requests straight to the
// origin.
func BenchmarkDirect(b *testing.B) {
	benchFetch(b, benchOrigin(b).URL, "")
}
