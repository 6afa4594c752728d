package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"syscall"
	"time"
)

// The proxy2 path is the reference an HTTP-aware tunnel is measured
// against: client → a Go httputil.ReverseProxy process → a second one →
// origin, keep-alive on every hop, each proxy a process of its own (this
// executable with roleEnv=proxy, forwarding to proxyTargetEnv). It does the
// least work any such tunnel must do, parsing and writing HTTP twice, with
// no encryption and no multiplexing (issue 16).
const proxyTargetEnv = "ADIT_BENCH_PROXY_TARGET"

// proxyPprofEnv, when set, makes a proxy process serve /debug/pprof/ on a
// second listener (--pprof-dir profiles the hops as it does edge and
// connector).
const proxyPprofEnv = "ADIT_BENCH_PROXY_PPROF"

var (
	reProxy      = regexp.MustCompile(`proxy listening on (\S+)\n`)
	reProxyPprof = regexp.MustCompile(`proxy pprof listening on (\S+)\n`)
)

// runProxy is a proxy process: it serves on 127.0.0.1:0 until stdin closes
// or a SIGTERM or SIGINT, and returns the exit code.
func runProxy() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	target, err := url.Parse(os.Getenv(proxyTargetEnv))
	if err != nil || target.Host == "" {
		fmt.Fprintf(os.Stderr, "bench: proxy: %s=%q: want a URL\n", proxyTargetEnv, os.Getenv(proxyTargetEnv))
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: proxy:", err)
		return 1
	}
	if os.Getenv(proxyPprofEnv) != "" {
		pln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: proxy: pprof:", err)
			return 1
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		psrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go psrv.Serve(pln)
		defer psrv.Close()
		fmt.Printf("proxy pprof listening on %s\n", pln.Addr())
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{
		MaxIdleConns:        0, // no limit
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   false,
	}
	rp.ErrorLog = nil
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	fmt.Printf("proxy listening on http://%s\n", ln.Addr())
	<-ctx.Done()
	srv.Close()
	return 0
}

// startProxy2 starts the two proxies in front of the origin and returns the
// proxy2 path; the proxies join r.procs (stopped at the end).
func (r *rig) startProxy2(ctx context.Context) (*path, error) {
	next := r.origin.URL()
	var hops []*proc
	var pprofs []string
	for i := 2; i >= 1; i-- { // the hop next to the origin first
		p, u, pprofAddr, stdin, err := startProxyProc(ctx, fmt.Sprintf("proxy hop %d", i), next, r.cfg.pprofDir != "")
		if err != nil {
			return nil, err
		}
		r.procs = append(r.procs, p)
		r.closers = append(r.closers, stdin.Close)
		hops = append([]*proc{p}, hops...)
		pprofs = append([]string{pprofAddr}, pprofs...)
		next = u
	}
	return &path{name: "proxy2", kind: kindProxy2, target: target{base: next}, hops: hops, hopsPprof: pprofs}, nil
}

// startProxyProc starts one proxy process forwarding to target and waits
// for its address, and with withPprof for its pprof address too. Its stdin
// is a pipe the harness holds, as the origin's: if the harness dies, the
// proxy exits too.
func startProxyProc(ctx context.Context, name, target string, withPprof bool) (p *proc, addr, pprofAddr string, stdin io.Closer, err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, "", "", nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	env := childEnv(roleEnv+"=proxy", proxyTargetEnv+"="+target)
	if withPprof {
		env = append(env, proxyPprofEnv+"=1")
	}
	p = newProc(name, exe, env)
	stdin, err = p.cmd.StdinPipe() // closed by Wait
	if err != nil {
		return nil, "", "", nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	if err := p.start(); err != nil {
		return nil, "", "", nil, err
	}
	m, err := p.waitMatch(ctx, reProxy, 30*time.Second)
	if err == nil && withPprof {
		var pm []string
		if pm, err = p.waitMatch(ctx, reProxyPprof, 30*time.Second); err == nil {
			pprofAddr = pm[1]
		}
	}
	if err != nil {
		p.stop(time.Second)
		return nil, "", "", nil, err
	}
	return p, m[1], pprofAddr, stdin, nil
}
