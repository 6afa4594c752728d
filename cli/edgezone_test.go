package cli

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

// TestEdgesFromZone: --edge-zone takes the SRV records of the protocol in
// use, and falls back to the credentials' addresses when DNS fails. The
// edges' own DNS server is tested answering them in package edge.
func TestEdgesFromZone(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		port := map[string]uint16{"_adit-tunnel._udp.example.com.": 7844, "_adit-tunnel._tcp.example.com.": 443}[q.Question[0].Name]
		if port == 0 {
			m.Rcode = dns.RcodeNameError
		} else {
			m.Answer = append(m.Answer, &dns.SRV{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 30},
				Priority: 10, Weight: 10, Port: port, Target: "edge-1.tunnel.example.com."})
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	defer srv.Shutdown()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
	log := slog.New(slog.DiscardHandler)
	for _, tt := range []struct {
		zone, protocol string
		fallback       []string
		want           []string
		wantErr        bool
	}{
		{"example.com", "auto", nil, []string{"edge-1.tunnel.example.com:7844"}, false},
		{"example.com.", "websocket", nil, []string{"edge-1.tunnel.example.com:443"}, false},
		{"nowhere.test", "auto", []string{"edge.test:7844"}, []string{"edge.test:7844"}, false},
		{"nowhere.test", "auto", nil, nil, true},
	} {
		got, err := edgesFromZone(context.Background(), log, r, tt.zone, tt.protocol, tt.fallback)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("edgesFromZone(%s, %s) = %v, %v; want %v (error %v)", tt.zone, tt.protocol, got, err, tt.want, tt.wantErr)
		}
	}
}
