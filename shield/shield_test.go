package shield

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge/layer"
)

func TestPrefixSetLongestWins(t *testing.T) {
	x := buildIPIndex([]control.IPRule{
		{Hostname: "a.example.com", Action: control.IPDeny, CIDR: "10.0.0.0/8"},
		{Hostname: "a.example.com", Action: control.IPAllow, CIDR: "10.1.0.0/16"},
		{Hostname: "a.example.com", Action: control.IPDeny, CIDR: "10.1.2.3/32"},
		{Hostname: "*.example.com", Action: control.IPDeny, CIDR: "192.0.2.0/24"},
		{Hostname: "*", Action: control.IPDeny, CIDR: "2001:db8::/32"},
		{Hostname: "*", Action: control.IPAllow, CIDR: "2001:db8::/32"},
	})
	for _, tc := range []struct {
		name, host, ip, want string
	}{
		{"deny /8", "a.example.com", "10.9.9.9", "deny"},
		{"allow /16 inside", "a.example.com", "10.1.9.9", "allow"},
		{"deny /32 inside the allow", "a.example.com", "10.1.2.3", "deny"},
		{"no rule", "a.example.com", "172.16.0.1", ""},
		{"wildcard", "b.example.com", "192.0.2.7", "deny"},
		{"wildcard not for the apex", "example.com", "192.0.2.7", ""},
		{"allow wins a tie", "c.other.org", "2001:db8::1", "allow"},
		{"mapped v4", "a.example.com", "::ffff:10.9.9.9", "deny"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := x.decide(tc.host, netip.MustParseAddr(tc.ip))
			if got != tc.want {
				t.Errorf("decide(%s, %s) = %q, want %q", tc.host, tc.ip, got, tc.want)
			}
		})
	}
}

// fakeClock is a settable clock for the rate limits.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newTestLimits(t *testing.T, clock *fakeClock, maxKeys int, rules ...control.RateLimit) *RateLimits {
	t.Helper()
	d, err := newDecisions(nil, "ratelimit_test", "test")
	if err != nil {
		t.Fatal(err)
	}
	l := &RateLimits{log: discard, quiet: discard, now: clock.now, maxKeys: int64(maxKeys), byID: map[string]*limiter{},
		blocked: d.counter("blocked"), logged: d.counter("logged"), untracked: d.counter("untracked")}
	recs := map[string][]byte{}
	for i, r := range rules {
		recs[string(rune('a'+i))] = mustJSON(t, r)
	}
	l.apply(recs)
	return l
}

func TestRateLimitSlidingWindow(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000_020, 0)} // 20s into a minute window
	l := newTestLimits(t, clock, 100, control.RateLimit{ID: "r1", Hostname: "h.example.com", Requests: 10, Period: 60})
	h := l.Wrap(layer.HandlerFunc(func(w http.ResponseWriter, r *http.Request, req *layer.Request) {}))
	send := func(ip string) int {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/", nil)
		h.ServeRouted(rec, r, &layer.Request{ID: "x", Host: "h.example.com", ClientIP: netip.MustParseAddr(ip)})
		return rec.Code
	}
	for i := range 10 {
		if c := send("192.0.2.1"); c != 200 {
			t.Fatalf("request %d: got %d, want 200", i, c)
		}
	}
	if c := send("192.0.2.1"); c != 429 {
		t.Fatalf("11th: got %d, want 429", c)
	}
	if c := send("192.0.2.2"); c != 200 {
		t.Fatalf("another client: got %d, want 200", c)
	}
	// Blocked until the window has room: at the next window's start the
	// previous count (10) still weighs fully.
	clock.t = clock.t.Add(40 * time.Second)
	if c := send("192.0.2.1"); c != 429 {
		t.Fatalf("at the next window's start: got %d, want 429", c)
	}
	// Halfway through the window after, the previous window (empty) no
	// longer counts: the client has its full allowance again.
	clock.t = time.Unix((clock.t.Unix()/60)*60+90, 0)
	if c := send("192.0.2.1"); c != 200 {
		t.Fatalf("two windows later: got %d, want 200", c)
	}
}

func TestRateLimitMaxKeys(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000_000, 0)}
	l := newTestLimits(t, clock, 2, control.RateLimit{ID: "r1", Hostname: "*", Requests: 1, Period: 60})
	h := l.Wrap(layer.HandlerFunc(func(w http.ResponseWriter, r *http.Request, req *layer.Request) {}))
	for i := range 5 {
		rec := httptest.NewRecorder()
		h.ServeRouted(rec, httptest.NewRequest("GET", "/", nil), &layer.Request{Host: "h.example.com", ClientIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})})
	}
	if n := l.keys.Load(); n != 2 {
		t.Errorf("tracked keys: got %d, want 2 (the cap)", n)
	}
}

func TestFloodFairShedding(t *testing.T) {
	f, err := NewFlood(layer.Deps{Logger: discard}, FloodConfig{MaxInflight: 10, MaxInflightPerAddr: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	release := make(chan struct{})
	entered := make(chan struct{}, 100)
	h := f.Wrap(layer.HandlerFunc(func(w http.ResponseWriter, r *http.Request, req *layer.Request) {
		entered <- struct{}{}
		<-release
	}))
	codes := make(chan int, 100)
	send := func(ip string) {
		rec := httptest.NewRecorder()
		h.ServeRouted(rec, httptest.NewRequest("GET", "/", nil), &layer.Request{ClientIP: netip.MustParseAddr(ip)})
		codes <- rec.Code
	}
	// The flooder fills the edge; the light client still gets in.
	for range 9 {
		go send("192.0.2.1")
		<-entered
	}
	go send("192.0.2.2")
	<-entered
	go send("192.0.2.1") // saturated, and it has more than its share
	if c := <-codes; c != http.StatusServiceUnavailable {
		t.Fatalf("flooder past the cap: got %d, want 503", c)
	}
	go send("192.0.2.3") // saturated, but it has nothing in flight
	<-entered
	close(release)
	for range 11 {
		if c := <-codes; c != 200 {
			t.Errorf("admitted request: got %d, want 200", c)
		}
	}
}

// The request path's cost with nothing configured: no allocation.
func TestNothingConfiguredAllocs(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000_000, 0)}
	rl := newTestLimits(t, clock, 10, control.RateLimit{ID: "r1", Hostname: "other.example.com", Requests: 1, Period: 60})
	ip := &IPRules{log: discard}
	ip.idx.Store(buildIPIndex([]control.IPRule{{Hostname: "other.example.com", Action: "deny", CIDR: "10.0.0.0/8"}}))
	w := &WAF{log: discard}
	w.idx.Store(&wafIndex{hosts: map[string]*engine{"other.example.com": {}}})
	end := layer.HandlerFunc(func(http.ResponseWriter, *http.Request, *layer.Request) {})
	fl, err := NewFlood(layer.Deps{Logger: discard}, FloodConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	h := ip.Wrap(fl.Wrap(rl.Wrap(rl.AfterAccess().Wrap(w.Wrap(end)))))
	r := httptest.NewRequest("GET", "/", nil)
	req := &layer.Request{Host: "h.example.com", ClientIP: netip.MustParseAddr("192.0.2.1")}
	rec := httptest.NewRecorder()
	if n := testing.AllocsPerRun(1000, func() { h.ServeRouted(rec, r, req) }); n != 0 {
		t.Errorf("allocations per request: %v, want 0", n)
	}
}

// The limits by Access email count only identified visitors, after Access.
func TestRateLimitByAccessEmail(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000_000, 0)}
	l := newTestLimits(t, clock, 100, control.RateLimit{ID: "r1", Hostname: "h.example.com", Requests: 1, Period: 60, By: control.ByAccessEmail})
	end := layer.HandlerFunc(func(http.ResponseWriter, *http.Request, *layer.Request) {})
	before, after := l.Wrap(end), l.AfterAccess().Wrap(end)
	send := func(h layer.Handler, email string) int {
		rec := httptest.NewRecorder()
		req := &layer.Request{Host: "h.example.com", ClientIP: netip.MustParseAddr("192.0.2.1")}
		if email != "" {
			req.Identity = &layer.Identity{Email: email}
		}
		h.ServeRouted(rec, httptest.NewRequest("GET", "/", nil), req)
		return rec.Code
	}
	for i := range 3 {
		if c := send(before, "a@example.com"); c != 200 {
			t.Fatalf("before Access, request %d: got %d, want 200 (not counted there)", i, c)
		}
		if c := send(after, ""); c != 200 {
			t.Fatalf("no identity, request %d: got %d, want 200 (not counted)", i, c)
		}
	}
	if c := send(after, "a@example.com"); c != 200 {
		t.Fatalf("first: got %d, want 200", c)
	}
	if c := send(after, "a@example.com"); c != 429 {
		t.Fatalf("second: got %d, want 429", c)
	}
	if c := send(after, "b@example.com"); c != 200 {
		t.Fatalf("another email: got %d, want 200", c)
	}
}

// A contended edge serves one address at most twice what the others send
// together (by default); a quiet one limits no one.
func TestFloodContendedRatio(t *testing.T) {
	f, err := NewFlood(layer.Deps{Logger: discard}, FloodConfig{MaxInflight: 4, MaxInflightPerAddr: 100, MinRatePerAddr: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := f.Wrap(layer.HandlerFunc(func(w http.ResponseWriter, r *http.Request, req *layer.Request) {}))
	send := sender(h)
	// Quiet: one address sends many, another a few; nobody is shed.
	for i := range 40 {
		if c := send("192.0.2.1"); c != 200 {
			t.Fatalf("quiet edge, request %d: got %d, want 200", i, c)
		}
	}
	for range 5 {
		send("192.0.2.2")
	}
	// Contended: two requests in flight (half the cap).
	release := make(chan struct{})
	entered := make(chan struct{})
	slow := f.Wrap(layer.HandlerFunc(func(w http.ResponseWriter, r *http.Request, req *layer.Request) {
		entered <- struct{}{}
		<-release
	}))
	for range 2 {
		go slow.ServeRouted(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), &layer.Request{ClientIP: netip.MustParseAddr("192.0.2.3")})
		<-entered
	}
	close(release)
	// 192.0.2.1 was served 40 in the last second, the others sent 7: it
	// is shed; 192.0.2.2 (served 5, the others sent 43) is not.
	if c := send("192.0.2.1"); c != http.StatusTooManyRequests {
		t.Errorf("the heaviest address on a contended edge: got %d, want 429", c)
	}
	if c := send("192.0.2.2"); c != 200 {
		t.Errorf("a light address on a contended edge: got %d, want 200", c)
	}
	if n := testutil.ToFloat64(f.rateAddr); n != 1 {
		t.Errorf("rate_addr decisions: got %v, want 1", n)
	}
	// The others now send less than MinRatePerAddr: nobody is shed.
	f.mu.Lock()
	f.rate, f.admitted = arrivals{}, arrivals{}
	for _, a := range f.addrs {
		a.rate, a.admitted = arrivals{}, arrivals{}
	}
	f.mu.Unlock()
	for i := range 40 {
		if c := send("192.0.2.1"); c != 200 {
			t.Fatalf("an address nearly alone on a contended edge, request %d: got %d, want 200", i, c)
		}
	}
}
