package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adit-dev/adit/internal/pki"
)

// The https scenario (issue 10), on the first adit path: the edge's public
// HTTPS listener, with a certificate brought for the path's hostname
// (`adit cert add`), against a Go TLS server straight (a second origin
// process serving HTTPS with the same certificate):
//
//   - new TLS handshakes per second: 8 workers each dial, complete a full
//     handshake (no session resumption) and close, for --duration;
//   - keep-alive 1 KiB GETs at c=50 over HTTP/1.1 and TLS: req/s, p50, p99.
//
// Both as values per path and as ratios (edge / direct), measured in one run.

var figHTTPS = func(m string) figName { return figName{"HTTPS", m} }

const handshakeWorkers = 8

func runHTTPS(ctx context.Context, r *rig, res *Results) error {
	p := r.aditPath()
	if p == nil || r.edge.httpsAddr == "" {
		return nil
	}
	certFile, keyFile, roots, err := writeBenchCert(r.tmp, p.hostname)
	if err != nil {
		return err
	}
	if _, err := runCmd(ctx, 2*time.Minute, r.bin, r.env(), "cert", "add", p.hostname, "--cert", certFile, "--key", keyFile); err != nil {
		return err
	}
	defer runCmd(context.Background(), time.Minute, r.bin, r.env(), "cert", "delete", p.hostname)
	tlsConf := &tls.Config{RootCAs: roots, ServerName: p.hostname}
	if err := waitHandshake(ctx, r.edge.httpsAddr, tlsConf, time.Minute); err != nil {
		return fmt.Errorf("the brought certificate does not serve: %w", err)
	}
	ref, err := startOrigin(ctx, "127.0.0.1:0", originTLSEnv+"="+certFile+":"+keyFile)
	if err != nil {
		return err
	}
	defer ref.stop(5 * time.Second)
	refAddr := ref.url[len("https://"):]

	targets := []struct {
		name string
		addr string
		t    target
	}{
		{"direct", refAddr, target{base: ref.url, tls: tlsConf}},
		{p.name, r.edge.httpsAddr, target{base: "https://" + r.edge.httpsAddr, host: p.hostname, tls: tlsConf}},
	}
	hs := map[string]float64{}
	rps := map[string]float64{}
	for _, tg := range targets {
		n, err := handshakes(ctx, tg.addr, tlsConf, max(r.cfg.duration, time.Second)) // a tiny run still completes some on a busy machine
		if err != nil {
			return fmt.Errorf("%s handshakes: %w", tg.name, err)
		}
		hs[tg.name] = n
		res.set(figHTTPS("new handshakes/s"), "1/s", tg.name, n)
		// Each of the 50 connections starts with a handshake: the warm-up
		// is long enough for them on a slow machine.
		s, err := closedLoop(ctx, tg.t, "/1k", 50, max(r.cfg.warmup, time.Second), max(r.cfg.duration, time.Second), nil)
		if err != nil {
			return fmt.Errorf("%s GETs: %w", tg.name, err)
		}
		rps[tg.name] = s.RequestsPerSecond
		res.set(figHTTPS("GET 1KiB c=50 req/s"), "req/s", tg.name, s.RequestsPerSecond)
		res.set(figHTTPS("GET 1KiB c=50 p50"), "µs", tg.name, us(s.P50))
		res.set(figHTTPS("GET 1KiB c=50 p99"), "µs", tg.name, us(s.P99))
		r.cfg.logf("HTTPS %s: %.0f new handshakes/s; c=50 GETs %.0f req/s, p99 %s, %d errors", tg.name, n, s.RequestsPerSecond, s.P99.Round(time.Microsecond), s.Errors)
	}
	if hs["direct"] > 0 && rps["direct"] > 0 {
		res.set(figHTTPS("handshakes/s vs direct"), "ratio", p.name, hs[p.name]/hs["direct"])
		res.set(figHTTPS("GET c=50 req/s vs direct"), "ratio", p.name, rps[p.name]/rps["direct"])
	}
	return nil
}

// handshakes counts the full TLS handshakes with addr that
// handshakeWorkers complete in d, per second.
func handshakes(ctx context.Context, addr string, conf *tls.Config, d time.Duration) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		n       atomic.Int64
		errOnce sync.Once
		first   error
		wg      sync.WaitGroup
	)
	start := time.Now()
	for range handshakeWorkers {
		wg.Go(func() {
			d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: conf.Clone()}
			for ctx.Err() == nil {
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					if ctx.Err() == nil {
						errOnce.Do(func() { first = err })
					}
					continue
				}
				c.Close()
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if n.Load() == 0 && first != nil {
		return 0, first
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

func waitHandshake(ctx context.Context, addr string, conf *tls.Config, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		d := &tls.Dialer{Config: conf.Clone()}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeBenchCert writes a certificate for host signed by a CA of its own
// (ECDSA P-256, as ACME CAs issue) into dir, the chain first, and returns
// its files and the root to trust.
func writeBenchCert(dir, host string) (certFile, keyFile string, roots *x509.CertPool, err error) {
	caPEM, caKeyPEM, err := pki.NewCA("adit bench CA")
	if err != nil {
		return "", "", nil, err
	}
	certPEM, keyPEM, err := pki.IssueServerCert(caPEM, caKeyPEM, []string{host}, 24*time.Hour)
	if err != nil {
		return "", "", nil, err
	}
	certFile, keyFile = filepath.Join(dir, "https-cert.pem"), filepath.Join(dir, "https-key.pem")
	if err := os.WriteFile(certFile, append(certPEM, caPEM...), 0o600); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return "", "", nil, err
	}
	roots = x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	return certFile, keyFile, roots, nil
}
