package shield

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge/layer"
)

// BenchmarkWAFGet is the WAF layer's cost for a small GET (the bench's
// /1k request) with the CRS at paranoia 1 in block mode, and with
// nothing configured for the hostname.
func BenchmarkWAFGet(b *testing.B) {
	cfg := control.WAFConfig{Hostname: "h.example.com", Mode: control.WAFBlock}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	w := &WAF{log: discard}
	e, err := w.compile(cfg, Directives(cfg))
	if err != nil {
		b.Fatal(err)
	}
	d, _ := newDecisions(nil, "waf_bench", "x")
	w.blocked, w.detected, w.bodyLimit, w.errs = d.counter("b"), d.counter("d"), d.counter("l"), d.counter("e")
	w.idx.Store(&wafIndex{hosts: map[string]*engine{"h.example.com": e}})
	h := w.Wrap(layer.HandlerFunc(func(rw http.ResponseWriter, r *http.Request, req *layer.Request) {}))
	for _, bc := range []struct{ name, host string }{{"crs-pl1-block", "h.example.com"}, {"none", "other.example.com"}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			r := httptest.NewRequest("GET", "/1k", nil)
			r.Header.Set("User-Agent", "Go-http-client/1.1")
			r.Header.Set("Accept-Encoding", "gzip")
			req := &layer.Request{ID: "0123456789abcdef", Host: bc.host, ClientIP: netip.MustParseAddr("192.0.2.1"), ClientAddr: "192.0.2.1:1234"}
			rec := httptest.NewRecorder()
			for b.Loop() {
				h.ServeRouted(rec, r, req)
			}
		})
	}
}
