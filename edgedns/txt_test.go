package edgedns

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"
)

func txtRecs(name, text string) []libdns.Record {
	return []libdns.Record{libdns.TXT{Name: name, Text: text, TTL: 10 * time.Second}}
}

// The Provider's records are answered by the DNS server (every edge's,
// as they come from etcd), and go when deleted.
func TestProvider(t *testing.T) {
	f := newFixture(t, nil)
	p := f.srv.Provider()
	ctx := context.Background()
	name := "_acme-challenge.example.com."
	// The apex and a wildcard of it present two texts at one name at once.
	for _, text := range []string{"first", "second"} {
		got, err := p.AppendRecords(ctx, "example.com.", txtRecs("_acme-challenge", text))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].RR() != (libdns.RR{Name: "_acme-challenge", TTL: 10 * time.Second, Type: "TXT", Data: text}) {
			t.Errorf("AppendRecords returned %v", got)
		}
	}
	long := strings.Repeat("x", 300) // two strings on the wire
	if _, err := p.AppendRecords(ctx, "example.com", txtRecs("long", long)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both texts", func() bool { return len(f.ask(t, "udp", name, dns.TypeTXT, nil).Answer) == 2 })
	// Each record reaches the server by its own watch event: wait for the
	// long one as well before reading it.
	waitFor(t, "the long text", func() bool { return len(f.ask(t, "tcp", "long.example.com.", dns.TypeTXT, nil).Answer) == 1 })
	resp := f.ask(t, "tcp", "long.example.com.", dns.TypeTXT, nil)
	if len(resp.Answer) != 1 || strings.Join(resp.Answer[0].(*dns.TXT).Txt, "") != long || resp.Answer[0].Header().Ttl != 10 {
		t.Errorf("a 300-byte text: %v", resp.Answer)
	}
	all, err := p.GetRecords(ctx, "example.com.")
	if err != nil || len(all) != 3 {
		t.Errorf("GetRecords = %v, %v; want 3", all, err)
	}

	deleted, err := p.DeleteRecords(ctx, "example.com.", txtRecs("_acme-challenge", "first"))
	if err != nil || len(deleted) != 1 {
		t.Fatalf("DeleteRecords = %v, %v", deleted, err)
	}
	waitFor(t, "one text left", func() bool { return len(f.ask(t, "udp", name, dns.TypeTXT, nil).Answer) == 1 })
	if got := f.ask(t, "udp", name, dns.TypeTXT, nil).Answer[0].(*dns.TXT).Txt; got[0] != "second" {
		t.Errorf("left: %q, want second", got)
	}
	// Deleting what is not there is no error; an empty text deletes all of a name.
	if got, err := p.DeleteRecords(ctx, "example.com.", txtRecs("_acme-challenge", "never")); err != nil || len(got) != 0 {
		t.Errorf("deleting a missing record: %v, %v", got, err)
	}
	if got, err := p.DeleteRecords(ctx, "example.com.", []libdns.Record{libdns.RR{Name: "_acme-challenge", Type: "TXT"}}); err != nil || len(got) != 1 {
		t.Errorf("deleting a name's records: %v, %v", got, err)
	}
	waitFor(t, "the name to go", func() bool { return f.ask(t, "udp", name, dns.TypeTXT, nil).Rcode == dns.RcodeNameError })

	for _, tt := range []struct {
		zone    string
		rec     libdns.Record
		wantErr string
	}{
		{"other.org.", libdns.TXT{Name: "_acme-challenge", Text: "x"}, "not served"},
		{"example.com.", libdns.Address{Name: "www"}, "only TXT"},
		{"example.com.", libdns.TXT{Name: "x.other.org.", Text: "x"}, "not in zone"},
		{"example.com.", libdns.TXT{Name: "x", Text: ""}, "text of 0 bytes"},
		{"example.com.", libdns.TXT{Name: "x", Text: strings.Repeat("x", 2000)}, "text of 2000 bytes"},
	} {
		if _, err := p.AppendRecords(ctx, tt.zone, []libdns.Record{tt.rec}); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("AppendRecords(%s, %v) = %v, want an error with %q", tt.zone, tt.rec, err, tt.wantErr)
		}
	}
}
