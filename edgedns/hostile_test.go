package edgedns

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/adit-dev/adit/control"
)

// exchangeRaw sends raw bytes over UDP and returns what comes back within
// wait, or nil.
func exchangeRaw(t *testing.T, addr string, b []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func packed(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Each malformed query costs at most one short answer: FORMERR, NOTIMP or
// BADVERS, never a lookup's worth; junk without a header costs nothing.
func TestMalformedQueries(t *testing.T) {
	f := newFixture(t, nil)
	threeEdges(t, f)
	f.route(t, "app.example.com")

	query := func(mod func(*dns.Msg)) []byte {
		m := new(dns.Msg)
		m.SetQuestion("app.example.com.", dns.TypeA)
		if mod != nil {
			mod(m)
		}
		return packed(t, m)
	}
	twoQuestions := query(func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) })
	withAnswer := query(func(m *dns.Msg) {
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "x.", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(1, 2, 3, 4)}}
	})
	update := query(func(m *dns.Msg) { m.Opcode = dns.OpcodeUpdate })
	ednsV1 := query(func(m *dns.Msg) { m.SetEdns0(1232, false); m.IsEdns0().SetVersion(1) })
	badECS := query(withECS("10.0.0.0/8"))
	// The ECS option ends the query: code, length, family (2 bytes each),
	// source prefix, scope (1 each), then the address's 1 byte for a /8.
	badECS[len(badECS)-2] = 9 // the scope: must be 0 in a query
	ecsBadFamily := query(withECS("10.0.0.0/8"))
	binary.BigEndian.PutUint16(ecsBadFamily[len(ecsBadFamily)-5:], 7)
	truncatedQuestion := query(nil)[:20]
	response := query(func(m *dns.Msg) { m.Response = true })

	tests := []struct {
		name  string
		b     []byte
		rcode int // -1: no answer at all
	}{
		{"short header", []byte{1, 2, 3}, -1},
		{"a response", response, -1},
		{"two questions", twoQuestions, dns.RcodeFormatError},
		{"an answer record", withAnswer, dns.RcodeFormatError},
		{"opcode update", update, dns.RcodeNotImplemented},
		{"EDNS version 1", ednsV1, dns.RcodeBadVers},
		{"ECS scope set", badECS, dns.RcodeFormatError},
		{"ECS family 7", ecsBadFamily, dns.RcodeFormatError},
		{"question cut short", truncatedQuestion, dns.RcodeFormatError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wait := 2 * time.Second
			if tt.rcode < 0 {
				wait = 300 * time.Millisecond
			}
			got := exchangeRaw(t, f.addr, tt.b, wait)
			if tt.rcode < 0 {
				if got != nil {
					t.Fatalf("answered %d bytes, want nothing", len(got))
				}
				return
			}
			if got == nil {
				t.Fatal("no answer")
			}
			m := new(dns.Msg)
			if err := m.Unpack(got); err != nil {
				t.Fatalf("answer does not parse: %v", err)
			}
			if m.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tt.rcode])
			}
			if len(m.Answer) != 0 || len(got) > len(tt.b)+16 {
				t.Errorf("answer of %d bytes with %d records to a %d-byte query: an error answer must be small", len(got), len(m.Answer), len(tt.b))
			}
		})
	}
}

// An answer larger than the client's UDP size is truncated (TC), and the
// whole of it comes over TCP.
func TestTruncation(t *testing.T) {
	f := newFixture(t, nil)
	const n = 60
	for i := range n {
		f.putEdge(t, control.EdgeNode{Name: fmt.Sprintf("edge-%02d", i), Health: control.EdgeHealthOK,
			PublicAddrs: []string{netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}).String() + ":443"}}, 0)
	}
	f.route(t, "app.example.com")
	plain := f.ask(t, "udp", "app.example.com.", dns.TypeA, nil) // no EDNS: 512 bytes
	if !plain.Truncated || len(plain.Answer) >= n {
		t.Errorf("UDP without EDNS: TC %v with %d records, want TC and fewer than %d", plain.Truncated, len(plain.Answer), n)
	}
	plain.Compress = true
	if b, _ := plain.Pack(); len(b) > 512 {
		t.Errorf("UDP answer of %d bytes, past 512", len(b))
	}
	big := f.ask(t, "udp", "app.example.com.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(4096, false) })
	if big.Truncated || len(big.Answer) != n {
		t.Errorf("UDP with EDNS 4096: TC %v with %d records, want all %d (they fit 1232 bytes)", big.Truncated, len(big.Answer), n)
	}
	ns := f.ask(t, "udp", "example.com.", dns.TypeNS, func(m *dns.Msg) { m.SetEdns0(4096, false) })
	ns.Compress = true
	if b, _ := ns.Pack(); !ns.Truncated || len(b) > maxUDPSize {
		t.Errorf("UDP answer of %d bytes (TC %v), want TC and at most %d", len(b), ns.Truncated, maxUDPSize)
	}
	whole := f.ask(t, "tcp", "example.com.", dns.TypeNS, nil)
	if whole.Truncated || len(whole.Answer) != n || len(whole.Extra) != n {
		t.Errorf("TCP: TC %v with %d NS and %d glue, want all %d", whole.Truncated, len(whole.Answer), len(whole.Extra), n)
	}
}

// Past its rate, a client network's UDP queries are dropped or answered
// empty with TC; over TCP, where no address can be forged, all are
// answered.
func TestRateLimit(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RateLimit = 5 })
	threeEdges(t, f)
	f.route(t, "app.example.com")
	c, err := net.Dial("udp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const sent = 100
	m := new(dns.Msg)
	m.SetQuestion("app.example.com.", dns.TypeA)
	for i := range sent {
		m.Id = uint16(i)
		if _, err := c.Write(packed(t, m)); err != nil {
			t.Fatal(err)
		}
	}
	var full, truncated int
	buf := make([]byte, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err != nil {
			break
		}
		var r dns.Msg
		if err := r.Unpack(buf[:n]); err != nil {
			t.Fatal(err)
		}
		if r.Truncated {
			truncated++
			if len(r.Answer) != 0 {
				t.Errorf("a truncated reply with %d records", len(r.Answer))
			}
		} else {
			full++
		}
	}
	t.Logf("%d queries: %d answered, %d truncated, %d dropped", sent, full, truncated, sent-full-truncated)
	if full > 20 || truncated == 0 || full+truncated >= sent {
		t.Errorf("%d answered, %d truncated of %d: want about 11 answered (burst), some truncated, some dropped", full, truncated, sent)
	}
	for range 20 {
		if got := f.ask(t, "tcp", "app.example.com.", dns.TypeA, nil); len(got.Answer) == 0 {
			t.Fatal("over TCP: no answer")
		}
	}
}

func TestLimiterBoundsMemory(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(1, 2, 10, 0)
	l.now = func() time.Time { return now }
	for i := range 1000 {
		l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}))
	}
	if len(l.buckets) > 10 {
		t.Fatalf("%d networks tracked, the bound is 10", len(l.buckets))
	}
	// Once they refill, idle networks make room for new ones.
	now = now.Add(time.Hour)
	if ok, _ := l.allow(netip.MustParseAddr("192.0.2.1")); !ok {
		t.Error("a new network after the others went idle: refused")
	}
	if _, ok := l.buckets[clientNet(netip.MustParseAddr("192.0.2.1"))]; !ok {
		t.Error("a new network after the others went idle: not tracked")
	}
	// One network's limit does not touch another's.
	a, b := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.200")
	l.allow(a)
	l.allow(a)
	if ok, _ := l.allow(b); ok {
		t.Error("a second address of the same /24 escaped its network's limit")
	}
}

// heldWriter is a UDP client's ResponseWriter whose WriteMsg reports the
// answer on wrote and then holds the query in flight until release closes.
type heldWriter struct {
	dns.ResponseWriter // the methods ServeDNS does not call
	remote             net.Addr
	wrote              chan<- *dns.Msg
	release            <-chan struct{}
}

func (w *heldWriter) RemoteAddr() net.Addr { return w.remote }
func (w *heldWriter) WriteMsg(m *dns.Msg) error {
	w.wrote <- m
	<-w.release
	return nil
}

// Past MaxUDPQueries answered at once, a UDP query is dropped before any
// work; a slot freed serves the next one; TCP queries take no slot.
func TestUDPQueriesBounded(t *testing.T) {
	const bound = 3
	f := newFixture(t, func(c *Config) { c.MaxUDPQueries = bound; c.RateLimit = -1 })
	udp := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 9), Port: 5353}
	q := new(dns.Msg)
	q.SetQuestion("nothing.example.com.", dns.TypeA)

	wrote := make(chan *dns.Msg, 2*bound)
	release := make(chan struct{})
	held := make(chan struct{})
	go func() {
		defer close(held)
		var wg sync.WaitGroup
		for range bound {
			wg.Go(func() { f.srv.ServeDNS(&heldWriter{remote: udp, wrote: wrote, release: release}, q) })
		}
		wg.Wait()
	}()
	for i := range bound {
		select {
		case <-wrote:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d queries reached their answer", i, bound)
		}
	}

	// All slots are held: this one returns at once, unanswered.
	open := make(chan struct{}) // a writer that does not hold its query
	close(open)
	f.srv.ServeDNS(&heldWriter{remote: udp, wrote: wrote, release: open}, q)
	if len(wrote) != 0 {
		t.Fatalf("a query past the bound of %d was answered", bound)
	}
	if got := testutil.ToFloat64(f.srv.metrics.busy); got != 1 {
		t.Errorf("adit_dns_busy_dropped_total %v, want 1", got)
	}
	// TCP is bounded by its connections, not by these slots.
	f.srv.ServeDNS(&heldWriter{remote: &net.TCPAddr{IP: udp.IP, Port: 5353}, wrote: wrote, release: open}, q)
	if len(wrote) != 1 {
		t.Fatal("a TCP query was not answered while the UDP slots were held")
	}
	<-wrote

	close(release)
	<-held
	f.srv.ServeDNS(&heldWriter{remote: udp, wrote: wrote, release: open}, q)
	if len(wrote) != 1 {
		t.Fatal("a UDP query after the held ones finished was not answered")
	}
	if m := <-wrote; m.Rcode != dns.RcodeNameError {
		t.Errorf("rcode %s, want NXDOMAIN", dns.RcodeToString[m.Rcode])
	}
}
