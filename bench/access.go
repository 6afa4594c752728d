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
