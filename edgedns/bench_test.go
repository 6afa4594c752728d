package edgedns

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkAnswer: one answer built from memory, by kind of question.
func BenchmarkAnswer(b *testing.B) {
	s := memServer(b)
	client := netip.MustParseAddr("10.9.9.9")
	for _, bc := range []struct {
		name  string
		qname string
		qtype uint16
		mod   func(*dns.Msg)
	}{
		{"A", "app.example.com.", dns.TypeA, nil},
		{"A-ECS", "app.example.com.", dns.TypeA, withECS("10.1.0.0/24")},
		{"NXDOMAIN", "nothing.example.com.", dns.TypeA, nil},
		{"NS", "example.com.", dns.TypeNS, nil},
		{"SRV", "_adit-tunnel._udp.example.com.", dns.TypeSRV, nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := new(dns.Msg)
			req.SetQuestion(bc.qname, bc.qtype)
			if bc.mod != nil {
				bc.mod(req)
			}
			b.ReportAllocs()
			for b.Loop() {
				resp := s.answer(req, client)
				resp.Truncate(maxUDPSize)
				if _, err := resp.Pack(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
