package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/adit-dev/adit/access/accesstest"
)

// The adit-quic-access path: the adit-quic tunnel and connector under
// another hostname that an Access application covers, with a valid session
// cookie on every request, so that the small GETs measure what checking a
// session costs (issue 11: under 10% of a request's CPU). The session
// comes from a real login: an OpenID provider (access/accesstest, in this
// process) and the edge's /.adit/login and /.adit/callback.

const accessHost = "access.bench.test"

// setupAccess adds the path, or marks it n/a with the reason.
func (r *rig) setupAccess(ctx context.Context) {
	var quic *path
	for _, p := range r.available(kindAdit) {
		if p.protocol == "quic" {
			quic = p
		}
	}
	p := &path{name: "adit-quic-access", kind: kindAccess, protocol: "quic", hostname: accessHost}
	r.paths = append(r.paths, p)
	if quic == nil {
		p.na = "needs the adit-quic path"
		return
	}
	p.conn, p.metrics = quic.conn, quic.metrics
	cookie, err := r.accessSession(ctx)
	if err != nil {
		p.na = err.Error()
		r.cfg.logf("%s: n/a: %s", p.name, p.na)
		return
	}
	p.target = target{base: "http://" + r.edge.httpAddr, host: accessHost, header: http.Header{"Cookie": {cookie}}}
}

// accessSession sets up an identity provider, an application with one
// policy and the route, logs in, and returns the session cookie.
func (r *rig) accessSession(ctx context.Context) (string, error) {
	user := accesstest.User{Name: "bench", Password: "bench-pw", Email: "bench@bench.test", Groups: []string{"bench"}}
	idp, err := accesstest.Start(user)
	if err != nil {
		return "", fmt.Errorf("access: test OpenID provider: %w", err)
	}
	r.closers = append(r.closers, idp.Close)
	secret := filepath.Join(r.tmp, "idp-secret")
	if err := os.WriteFile(secret, []byte(idp.ClientSecret), 0o600); err != nil {
		return "", err
	}
	env := r.env()
	for _, args := range [][]string{
		{"access", "idp", "add", "bench", "--issuer", idp.Issuer, "--client-id", idp.ClientID, "--client-secret-file", secret},
		{"access", "app", "create", "bench", "--domain", accessHost},
		{"access", "policy", "add", "bench", "--action", "allow", "--include", "email_domain:bench.test"},
		{"tunnel", "route", "dns", "bench-quic", accessHost},
	} {
		if _, err := runCmd(ctx, time.Minute, r.bin, env, args...); err != nil {
			return "", err
		}
	}
	// The login, as a browser does it; *.bench.test is the edge.
	d := &net.Dialer{}
	c := &http.Client{Jar: accesstest.Jar(), Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if h, _, _ := net.SplitHostPort(addr); strings.HasSuffix(h, ".bench.test") {
				addr = r.edge.httpAddr
			}
			return d.DialContext(ctx, network, addr)
		},
	}}
	_, port, _ := net.SplitHostPort(r.edge.httpAddr)
	app := "http://" + accessHost + ":" + port + "/1k"
	resp, err := accesstest.BrowserLogin(ctx, c, app, user)
	if err != nil {
		return "", fmt.Errorf("access: login: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("access: after the login the application answered %s", resp.Status)
	}
	u, _ := url.Parse(app)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "Adit_Authorization" {
			return ck.Name + "=" + ck.Value, nil
		}
	}
	return "", fmt.Errorf("access: no session cookie after the login")
}

// figAccess names the access scenario's figures.
func figAccess(m string) figName { return figName{"Access GET 1KiB c=50", m} }

// accessRounds is how many measured runs each path gets in the access
// scenario, in the order A B B A A B B A...
const accessRounds = 6

// runAccess measures what Access costs a request: c=50 1 KiB GETs on
// adit-quic and on adit-quic-access (the same edge, tunnel and connector;
// an Access application and a session cookie), in short runs that
// alternate between the two, A B B A ..., each --duration/2 after a
// warm-up, so that a change in the machine's load (another job starting)
// weighs on both alike. It sums the CPU time of each process and the
// requests the origin answered per path, and reports the CPU per request
// and the ratio with Access to without. The load comes from the
// harness's Go client.
func runAccess(ctx context.Context, r *rig, res *Results) error {
	var base, acc *path
	for _, p := range r.available(kindAdit) {
		if p.protocol == "quic" {
			base = p
		}
	}
	for _, p := range r.available(kindAccess) {
		acc = p
	}
	if base == nil || acc == nil {
		r.cfg.logf("access: n/a: needs the adit-quic and adit-quic-access paths")
		return nil
	}
	const c = 50
	slice := max(r.cfg.duration/2, 500*time.Millisecond)
	warm := min(max(r.cfg.warmup, 50*time.Millisecond), time.Second)
	type sum struct {
		cpu    map[string]time.Duration
		served int64
		reqs   float64 // requests the client completed in the windows
		secs   float64
	}
	sums := map[*path]*sum{base: {cpu: map[string]time.Duration{}}, acc: {cpu: map[string]time.Duration{}}}
	order := []*path{base, acc}
	for i := range 2 * accessRounds {
		p := order[(i+1)/2%2] // A B B A A B B A ...
		meter := r.newCPUMeter(p, true)
		s, err := closedLoop(ctx, p.target, "/1k", c, warm, slice, meter.mark)
		if err != nil && (s.Errors > 0 || ctx.Err() != nil) {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		// No request both started and ended in a short window on a slow
		// machine: the origin's count and the CPU still add up.
		used, served, err := meter.used()
		if err != nil {
			return err
		}
		t := sums[p]
		for side, d := range used {
			t.cpu[side] += d
		}
		t.served += served
		t.reqs += s.RequestsPerSecond * slice.Seconds()
		t.secs += slice.Seconds()
	}
	per := map[*path]map[string]float64{}
	for _, p := range order {
		t := sums[p]
		if t.served <= 0 {
			return fmt.Errorf("%s: the origin answered no request", p.name)
		}
		per[p] = cpuPer(t.cpu, float64(t.served), time.Microsecond, true)
		per[p]["edge+connector"] = per[p]["edge"] + per[p]["connector"]
		res.set(figAccess("req/s"), "req/s", p.name, t.reqs/t.secs)
		for _, side := range []string{"edge", "connector", "edge+connector", "total"} {
			res.set(figAccess(cpuMetric(side)), unitCPUReq, p.name, per[p][side])
		}
		r.cfg.logf("access %s: %.0f req/s; CPU µs/req: client %.1f, origin %.1f, edge %.1f, connector %.1f, total %.1f",
			p.name, t.reqs/t.secs, per[p]["client"], per[p]["origin"], per[p]["edge"], per[p]["connector"], per[p]["total"])
	}
	for _, side := range []string{"edge+connector", "total"} {
		ratio := per[acc][side] / per[base][side]
		res.set(figAccess(cpuMetric(side)+" with/without Access"), "x", acc.name, ratio)
		r.cfg.logf("access: %s CPU per request with Access / without: %.3fx", side, ratio)
	}
	return nil
}
