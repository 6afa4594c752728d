package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge"
)

// The shield end to end (issue 12): each rule kind through a real edge,
// connector and origin, with each test client on its own loopback address.

// shieldRig is an edge with one routed hostname whose origin echoes the
// request (path, body length) and an API client.
type shieldRig struct {
	srv  *edge.Server
	api  *control.Client
	host string
	logs *syncBuffer // the edge's, info and up
	// release, when closed, lets /slow answers go.
	release chan struct{}
}

func startShieldRig(t *testing.T, mod func(*edge.Config)) *shieldRig {
	t.Helper()
	logs := &syncBuffer{}
	var mods []func(*edge.Config)
	if mod != nil {
		mods = append(mods, mod)
	}
	srv := startEdgeLogged(t, logs, mods...)
	rig := &shieldRig{srv: srv, logs: logs, host: "app.example.com", release: make(chan struct{})}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-rig.release:
			case <-r.Context().Done():
			}
		}
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "ok %s %d\n", r.URL.Path, n)
	}))
	t.Cleanup(origin.Close)
	t.Cleanup(func() {
		select {
		case <-rig.release:
		default:
			close(rig.release)
		}
	})
	tun := createTunnel(t, srv, "shield", rig.host)
	startConnector(t, srv, tun, mustIngress(t, origin.URL))
	token, err := os.ReadFile(srv.AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	rig.api, err = control.NewClient(srv.APIURL(), strings.TrimSpace(string(token)), srv.CAPEM())
	if err != nil {
		t.Fatal(err)
	}
	return rig
}

// client returns an HTTP client whose connections come from 127.0.0.n.
func clientFrom(n int) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(n))}, Timeout: 10 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}}
}

// do sends a request for the rig's hostname and returns status and body.
func (rig *shieldRig) do(t *testing.T, c *http.Client, method, path string, body io.Reader, hdr ...string) (int, string, http.Header, error) {
	t.Helper()
	req, err := http.NewRequest(method, edgeURL(rig.srv, path), body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = rig.host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header, err
}

// waitStatus waits until a GET of path from c answers want (a change
// made through the API reaching the edge's memory).
func (rig *shieldRig) waitStatus(t *testing.T, c *http.Client, path string, want int) {
	t.Helper()
	var got int
	var gerr error
	if !waitWithin(20*time.Second, func() bool {
		got, _, _, gerr = rig.do(t, c, "GET", path, nil)
		return got == want
	}) {
		t.Fatalf("GET %s: got %d (%v), want %d", path, got, gerr, want)
	}
}

func TestShieldIPRules(t *testing.T) {
	rig := startShieldRig(t, nil)
	ctx := context.Background()
	a, b, c := clientFrom(2), clientFrom(3), clientFrom(4)
	rule, err := rig.api.AddIPRule(ctx, control.IPRule{Hostname: rig.host, Action: control.IPDeny, CIDR: "127.0.0.2", Note: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if rule.CIDR != "127.0.0.2/32" {
		t.Errorf("cidr: got %q, want 127.0.0.2/32", rule.CIDR)
	}
	rig.waitStatus(t, a, "/", http.StatusForbidden)
	if code, body, h, _ := rig.do(t, a, "GET", "/", nil); code != 403 || !strings.Contains(body, h.Get(edge.RequestIDHeader)) {
		t.Errorf("denied: got %d %q, want 403 naming the request ID", code, body)
	}
	if code, _, _, err := rig.do(t, b, "GET", "/", nil); code != 200 {
		t.Errorf("other client: got %d (%v), want 200", code, err)
	}

	// A longer allow inside a deny: 127.0.0.0/29 denied, 127.0.0.3 allowed.
	if _, err := rig.api.AddIPRule(ctx, control.IPRule{Hostname: rig.host, Action: control.IPDeny, CIDR: "127.0.0.0/29"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rig.api.AddIPRule(ctx, control.IPRule{Hostname: rig.host, Action: control.IPAllow, CIDR: "127.0.0.3/32"}); err != nil {
		t.Fatal(err)
	}
	// The two rules reach the edge by their own watch events, in order:
	// once the deny is seen, wait for the allow too.
	rig.waitStatus(t, c, "/", http.StatusForbidden)
	rig.waitStatus(t, b, "/", http.StatusOK) // allowed inside the denied prefix
	if code, _, _, err := rig.do(t, c, "GET", "/", nil); code != 403 {
		t.Errorf("denied prefix after the allow: got %d (%v), want 403", code, err)
	}

	// "*" deny: refused at the connection, before any byte.
	star, err := rig.api.AddIPRule(ctx, control.IPRule{Hostname: control.AllHosts, Action: control.IPDeny, CIDR: "127.0.0.12/32"})
	if err != nil {
		t.Fatal(err)
	}
	e := clientFrom(12)
	waitFor(t, "the * deny rule", func() bool {
		e.CloseIdleConnections()
		_, _, _, err := rig.do(t, e, "GET", "/", nil)
		return err != nil
	})
	if err := rig.api.DeleteIPRule(ctx, star.ID); err != nil {
		t.Fatal(err)
	}
	rig.waitStatus(t, e, "/", http.StatusOK)

	rules, err := rig.api.ListIPRules(ctx, rig.host)
	if err != nil || len(rules) != 3 {
		t.Fatalf("list: got %d rules (%v), want 3", len(rules), err)
	}
	if _, err := rig.api.AddIPRule(ctx, control.IPRule{Hostname: rig.host, Action: "drop", CIDR: "10.0.0.0/8"}); err == nil || !strings.Contains(err.Error(), "action") {
		t.Errorf("bad action: got %v, want an error naming the action", err)
	}
	if _, err := rig.api.AddIPRule(ctx, control.IPRule{Hostname: rig.host, Action: "deny", CIDR: "10.0.0.0/33"}); err == nil || !strings.Contains(err.Error(), "cidr") {
		t.Errorf("bad cidr: got %v, want an error naming the cidr", err)
	}
}

func TestShieldRateLimit(t *testing.T) {
	rig := startShieldRig(t, nil)
	ctx := context.Background()
	a, b := clientFrom(6), clientFrom(7)
	lim, err := rig.api.AddRateLimit(ctx, control.RateLimit{Hostname: rig.host, Requests: 3, Period: 60, Path: "^/api/", Timeout: 120})
	if err != nil {
		t.Fatal(err)
	}
	// Wait for the limit to apply: a's requests are then counted.
	rig.waitStatus(t, a, "/api/x", http.StatusTooManyRequests)
	code, body, h, _ := rig.do(t, a, "GET", "/api/x", nil)
	if code != 429 || h.Get("Retry-After") == "" || !strings.Contains(body, h.Get(edge.RequestIDHeader)) {
		t.Errorf("over the limit: got %d, Retry-After %q, body %q; want 429 with Retry-After and the request ID", code, h.Get("Retry-After"), body)
	}
	if ra, _ := strconv.Atoi(h.Get("Retry-After")); ra < 60 || ra > 120 {
		t.Errorf("Retry-After %d, want the timeout's remaining 60-120s", ra)
	}
	if code, _, _, _ := rig.do(t, a, "GET", "/other", nil); code != 200 {
		t.Errorf("a path the limit does not match: got %d, want 200", code)
	}
	for i := range 3 {
		if code, _, _, err := rig.do(t, b, "GET", "/api/x", nil); code != 200 {
			t.Fatalf("other client, request %d: got %d (%v), want 200", i, code, err)
		}
	}
	if code, _, _, _ := rig.do(t, b, "GET", "/api/x", nil); code != 429 {
		t.Errorf("other client's 4th: got %d, want 429", code)
	}

	// By header, log only: nothing refused.
	if err := rig.api.DeleteRateLimit(ctx, lim.ID); err != nil {
		t.Fatal(err)
	}
	rig.waitStatus(t, a, "/api/x", http.StatusOK)
	if _, err := rig.api.AddRateLimit(ctx, control.RateLimit{Hostname: rig.host, Requests: 2, Period: 60, By: "header:X-Api-Key", Method: "post"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the header limit", func() bool {
		code, _, _, _ := rig.do(t, a, "POST", "/k", strings.NewReader("x"), "X-Api-Key", "k1")
		return code == 429
	})
	if code, _, _, _ := rig.do(t, a, "POST", "/k", strings.NewReader("x"), "X-Api-Key", "k2"); code != 200 {
		t.Errorf("another key: got %d, want 200", code)
	}
	if code, _, _, _ := rig.do(t, a, "GET", "/k", nil, "X-Api-Key", "k1"); code != 200 {
		t.Errorf("another method: got %d, want 200", code)
	}
	if _, err := rig.api.AddRateLimit(ctx, control.RateLimit{Hostname: rig.host, Requests: 2, Period: 60, By: "cookie"}); err == nil || !strings.Contains(err.Error(), "by") {
		t.Errorf("bad by: got %v, want an error naming it", err)
	}
}

func TestShieldWAF(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "waf.log")
	rig := startShieldRig(t, func(c *edge.Config) { c.WAFLog = logFile })
	ctx := context.Background()
	cl := clientFrom(8)
	sqli := "/search?q=1%27%20OR%201%3D1%20UNION%20SELECT%20password%20FROM%20users--"
	str := func(s string) *string { return &s }

	if _, err := rig.api.SetWAF(ctx, rig.host, control.WAFSettings{Mode: str("block")}); err != nil {
		t.Fatal(err)
	}
	rig.waitStatus(t, cl, sqli, http.StatusForbidden)
	code, body, h, _ := rig.do(t, cl, "GET", sqli, nil)
	id := h.Get(edge.RequestIDHeader)
	if code != 403 || id == "" || !strings.Contains(body, id) {
		t.Errorf("blocked: got %d %q, want 403 naming the request ID", code, body)
	}
	if code, _, _, _ := rig.do(t, cl, "GET", "/search?q=shoes", nil); code != 200 {
		t.Errorf("benign: got %d, want 200", code)
	}
	waitFor(t, "the waf log line", func() bool {
		b, _ := os.ReadFile(logFile)
		return strings.Contains(string(b), `[unique_id "`+id+`"]`) && strings.Contains(string(b), `[id "942`)
	})
	// Logged once, with the rule IDs.
	waitFor(t, "the block's log line", func() bool { return strings.Contains(rig.logs.String(), "request_id="+id) })
	if n := strings.Count(rig.logs.String(), "request_id="+id); n != 1 {
		t.Errorf("the block is logged %d times, want once", n)
	}
	if line := rig.logs.String(); !strings.Contains(line, " 942100 ") {
		t.Errorf("the block's log line has no rule IDs: %s", line)
	}
	// The CRS regression suite's marker.
	rig.do(t, cl, "GET", "/", nil, "X-CRS-Test", "marker-1234")
	waitFor(t, "the X-CRS-Test marker", func() bool {
		b, _ := os.ReadFile(logFile)
		return strings.Contains(string(b), `X-CRS-Test "marker-1234"`)
	})

	// Body limit: reject, then partial.
	if _, err := rig.api.SetWAF(ctx, rig.host, control.WAFSettings{BodyLimit: ptr(int64(1024))}); err != nil {
		t.Fatal(err)
	}
	big := "a=" + strings.Repeat("a", 3998)
	waitFor(t, "the body limit", func() bool {
		code, _, _, _ := rig.do(t, cl, "POST", "/up", strings.NewReader(big), "Content-Type", "application/x-www-form-urlencoded")
		return code == 413
	})
	if code, body, _, _ := rig.do(t, cl, "POST", "/up", strings.NewReader(big[:1024]), "Content-Type", "application/x-www-form-urlencoded"); code != 200 || !strings.Contains(body, "ok /up 1024") {
		t.Errorf("a body at the limit: got %d %q, want 200 with 1024 bytes", code, body)
	}
	if _, err := rig.api.SetWAF(ctx, rig.host, control.WAFSettings{BodyLimitAction: str("partial")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "partial body inspection", func() bool {
		code, body, _, _ := rig.do(t, cl, "POST", "/up", strings.NewReader(big), "Content-Type", "application/x-www-form-urlencoded")
		return code == 200 && strings.Contains(body, "ok /up 4000")
	})

	// Custom rules after the CRS, and an exclusion by path.
	if _, err := rig.api.AddWAFRules(ctx, rig.host, control.WAFRules{Name: "custom.conf",
		Text: `SecRule ARGS:foo "@streq bar" "id:10001,phase:1,deny,status:403,log,msg:'foo is bar'"`}); err != nil {
		t.Fatal(err)
	}
	rig.waitStatus(t, cl, "/x?foo=bar", http.StatusForbidden)
	if _, err := rig.api.AddWAFExclusion(ctx, rig.host, control.WAFExclusion{Rule: 10001, Path: "^/ok"}); err != nil {
		t.Fatal(err)
	}
	rig.waitStatus(t, cl, "/ok?foo=bar", http.StatusOK)
	if code, _, _, _ := rig.do(t, cl, "GET", "/x?foo=bar", nil); code != 403 {
		t.Errorf("outside the excluded path: got %d, want 403", code)
	}
	// Rules before the CRS set its variables: a threshold nothing reaches.
	if _, err := rig.api.AddWAFRules(ctx, rig.host, control.WAFRules{Name: "setup.conf", BeforeCRS: true,
		Text: `SecAction "id:10002,phase:1,pass,nolog,setvar:tx.inbound_anomaly_score_threshold=10000"`}); err != nil {
		t.Fatal(err)
	}
	rig.waitStatus(t, cl, sqli, http.StatusOK)
	// Rules that do not compile are refused with the parser's reason.
	if _, err := rig.api.AddWAFRules(ctx, rig.host, control.WAFRules{Name: "bad.conf", Text: `SecRule ARGS "@nosuchop x" "id:10003"`}); err == nil || !strings.Contains(err.Error(), "compile") {
		t.Errorf("bad rules: got %v, want a compile error", err)
	}

	// Detect: logged, forwarded. Off: forwarded.
	if err := rig.api.DeleteWAF(ctx, rig.host); err != nil {
		t.Fatal(err)
	}
	if _, err := rig.api.SetWAF(ctx, control.AllHosts, control.WAFSettings{Mode: str("detect"), Paranoia: ptr(2)}); err != nil {
		t.Fatal(err)
	}
	// The "*" setting applies once its rules are compiled: a request
	// it logs and forwards shows it.
	waitFor(t, "the detect-mode log line", func() bool {
		before, _ := os.ReadFile(logFile)
		code, _, h, _ := rig.do(t, cl, "GET", sqli, nil)
		if code != 200 {
			t.Fatalf("detect: got %d, want 200", code)
		}
		b, _ := os.ReadFile(logFile)
		return len(b) > len(before) && strings.Contains(string(b[len(before):]), `[unique_id "`+h.Get(edge.RequestIDHeader)+`"]`)
	})
	// A streamed upload in detect mode arrives whole.
	if code, body, _, _ := rig.do(t, cl, "POST", "/up", io.MultiReader(strings.NewReader(big), strings.NewReader(big)), "Content-Type", "application/x-www-form-urlencoded"); code != 200 || !strings.Contains(body, "ok /up 8000") {
		t.Errorf("detect upload: got %d %q, want 200 with 8000 bytes", code, body)
	}
	if _, err := rig.api.SetWAF(ctx, control.AllHosts, control.WAFSettings{Mode: str("off")}); err != nil {
		t.Fatal(err)
	}
	if _, err := rig.api.SetWAF(ctx, rig.host, control.WAFSettings{Mode: str("loud")}); err == nil || !strings.Contains(err.Error(), "mode") {
		t.Errorf("bad mode: got %v, want an error naming the mode", err)
	}
	if _, err := rig.api.SetWAF(ctx, rig.host, control.WAFSettings{Mode: str("block"), Paranoia: ptr(5)}); err == nil || !strings.Contains(err.Error(), "paranoia") {
		t.Errorf("bad paranoia: got %v, want an error naming it", err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestShieldFlood(t *testing.T) {
	rig := startShieldRig(t, func(c *edge.Config) {
		c.Flood.MaxInflightPerAddr = 2
		c.Flood.MaxConnsPerAddr = 4
		c.MetricsAddr = "127.0.0.1:0"
	})
	a, b := clientFrom(9), clientFrom(10)
	rig.waitStatus(t, a, "/", http.StatusOK)
	// Two slow requests from a fill its in-flight cap; a third is shed
	// with 429, b is unaffected.
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A request whose answer is out may still count for a moment.
			if !waitWithin(30*time.Second, func() bool {
				code, _, _, _ := rig.do(t, a, "GET", "/slow", nil)
				return code != http.StatusTooManyRequests
			}) {
				t.Error("GET /slow from a: still 429 after 30s")
			}
		}()
	}
	waitFor(t, "two requests in flight", func() bool {
		code, _, h, _ := rig.do(t, a, "GET", "/", nil)
		return code == 429 && h.Get("Retry-After") != ""
	})
	if code, _, _, err := rig.do(t, b, "GET", "/", nil); code != 200 {
		t.Errorf("other address: got %d (%v), want 200", code, err)
	}
	close(rig.release)
	wg.Wait()

	// Open connections: past 4 from one address, the edge closes them.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 11)}}
	refused := false
	for range 8 {
		c, err := d.Dial("tcp", rig.srv.HTTPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", rig.host)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 12)
		if _, err := io.ReadFull(c, buf); err != nil {
			refused = true
			break
		}
	}
	if !refused {
		t.Error("8 open connections from one address: none refused, want the 5th")
	}

	// Every decision is counted by reason.
	resp, err := http.Get("http://" + rig.srv.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics := readAll(t, resp)
	for _, reason := range []string{"inflight_addr", "conns"} {
		re := regexp.MustCompile(`adit_edge_flood_decisions_total\{reason="` + reason + `"\} ([1-9][0-9]*)`)
		if !re.MatchString(metrics) {
			t.Errorf("/metrics has no nonzero adit_edge_flood_decisions_total{reason=%q}", reason)
		}
	}
}

func TestShieldCLI(t *testing.T) {
	rig := startShieldRig(t, nil)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, rig.srv.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := []string{"--api", rig.srv.APIURL(), "--token-file", rig.srv.AdminTokenFile(), "--ca", ca}
	adit := func(args ...string) string { return mustAdit(t, nil, append(args, conn...)...) }
	fails := func(want string, args ...string) {
		t.Helper()
		out, code := runAdit(t, nil, append(args, conn...)...)
		if code == 0 || !strings.Contains(out, want) {
			t.Errorf("adit %s: exit %d %q, want a failure naming %q", strings.Join(args, " "), code, out, want)
		}
	}
	idOf := func(out string) string {
		f := strings.Fields(out)
		for i, w := range f {
			if w == "rule" || w == "limit" {
				return strings.TrimSuffix(f[i+1], ":")
			}
		}
		t.Fatalf("no ID in %q", out)
		return ""
	}

	out := adit("ip-rule", "add", rig.host, "--deny", "127.0.0.13", "--note", "cli test")
	ipID := idOf(out)
	c := clientFrom(13)
	rig.waitStatus(t, c, "/", http.StatusForbidden)
	if out := adit("ip-rule", "list"); !strings.Contains(out, "127.0.0.13/32") || !strings.Contains(out, `"cli test"`) {
		t.Errorf("ip-rule list:\n%s", out)
	}
	adit("ip-rule", "delete", ipID)
	rig.waitStatus(t, c, "/", http.StatusOK)
	fails("--allow", "ip-rule", "add", rig.host)
	fails("cidr", "ip-rule", "add", "--deny", "300.0.0.1")

	out = adit("ratelimit", "add", rig.host, "--requests", "1", "--period", "1m", "--path", "^/rl")
	rlID := idOf(out)
	waitFor(t, "the rate limit", func() bool {
		code, _, _, _ := rig.do(t, c, "GET", "/rl", nil)
		return code == 429
	})
	if out := adit("ratelimit", "list", rig.host); !strings.Contains(out, rlID) || !strings.Contains(out, "1/1m0s") {
		t.Errorf("ratelimit list:\n%s", out)
	}
	adit("ratelimit", "delete", rlID)
	fails("period", "ratelimit", "add", rig.host, "--requests", "1", "--period", "1500ms")
	fails("by", "ratelimit", "add", rig.host, "--requests", "1", "--by", "cookie")

	adit("waf", "set", rig.host, "--mode", "block", "--paranoia", "1")
	rules := filepath.Join(dir, "custom.conf")
	os.WriteFile(rules, []byte(`SecRule ARGS:cli "@streq 1" "id:10010,phase:1,deny,status:403,log,msg:'cli test'"`+"\n"), 0o600)
	adit("waf", "rules", "add", rig.host, "--file", rules)
	rig.waitStatus(t, c, "/?cli=1", http.StatusForbidden)
	adit("waf", "exclude", rig.host, "--rule", "10010")
	rig.waitStatus(t, c, "/?cli=1", http.StatusOK)
	out = adit("waf", "show", rig.host)
	for _, want := range []string{"mode                block", "rule 10010, (every path)", "custom.conf"} {
		if !strings.Contains(out, want) {
			t.Errorf("waf show lacks %q:\n%s", want, out)
		}
	}
	fails("mode", "waf", "set", rig.host, "--mode", "on")
	fails("compile", "waf", "rules", "add", rig.host, "--file", ca)
	adit("waf", "delete", rig.host)
	fails("no waf setting", "waf", "show", rig.host)
}

// Streaming stays streaming through the WAF in detect mode: server-sent
// events arrive as sent, WebSockets echo, a large upload arrives whole;
// and a WebSocket passes a hostname in block mode too.
func TestShieldWAFStreaming(t *testing.T) {
	second := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/sse":
			heldEvents(w, r, "one", second)
		case "/ws":
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			typ, msg, err := c.Read(r.Context())
			if err == nil {
				c.Write(r.Context(), typ, append([]byte("echo: "), msg...))
			}
		default:
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "%d", n)
		}
	}))
	defer origin.Close()
	srv, _ := startWAFPair(t, &syncBuffer{}, origin.URL, "stream.example.com", "ws.example.com")
	ctx := t.Context()
	// Both apply once compiled: the block-mode one refuses an attack.
	waitFor(t, "the WAF settings", func() bool {
		resp, err := edgeGet(srv, "ws.example.com", "/?q=1%27%20OR%201%3D1--")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 403
	})

	// SSE: the first event arrives while the origin holds the second.
	readHeldEvents(t, srv, "stream.example.com", "one", second)

	// A large upload streams whole (past the 128 KiB the WAF inspects).
	const size = 8 << 20
	req, _ := http.NewRequestWithContext(ctx, "POST", edgeURL(srv, "/up"), io.LimitReader(zeroReader{}, size))
	req.Host = "stream.example.com"
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := edgeClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 200 || body != strconv.Itoa(size) {
		t.Errorf("upload: got %d %q, want 200 %d", resp.StatusCode, body, size)
	}

	// WebSockets, in detect and in block mode.
	for _, host := range []string{"stream.example.com", "ws.example.com"} {
		c, _, err := websocket.Dial(ctx, "ws://"+srv.HTTPAddr().String()+"/ws", &websocket.DialOptions{Host: host})
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		c.Write(ctx, websocket.MessageText, []byte("hi"))
		if _, got, err := c.Read(ctx); err != nil || string(got) != "echo: hi" {
			t.Errorf("%s: websocket echo: %q, %v", host, got, err)
		}
		c.CloseNow()
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
