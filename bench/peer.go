package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/adit-dev/adit/internal/pki"
)

// The peer scenario (issue 15), on the first adit path: a second edge
// process joins the bench edge's fleet (its etcd, through the embedded
// server's socket, and its CA) and the path's hostname is asked through
// both edges:
//
//   - local: client → bench edge (which holds the connector's
//     connections) → connector → origin, as in every other scenario;
//   - forwarded: client → second edge → peer link (QUIC, mutual TLS) →
//     bench edge → connector → origin.
//
// The second edge advertises a tunnel address where nothing listens, so
// that a connector of the fleet never keeps a connection on it: every
// request it takes is forwarded. Measured, each way in turn: 1 KiB GETs at
// c=1 (p50 and p99: the latency a forward adds) and at c=50 (req/s), and a
// download of --big-size (MB/s); then forwarded / local as ratios.

var figPeer = func(m string) figName { return figName{"peer link", m} }

func runPeer(ctx context.Context, r *rig, res *Results) error {
	p := r.aditPath()
	if p == nil {
		return nil
	}
	dir := filepath.Join(r.tmp, "edge-b")
	if err := copyCA(r.dataDir, dir); err != nil {
		return err
	}
	absData, err := filepath.Abs(r.dataDir)
	if err != nil {
		return err
	}
	args := []string{"edge", "--data-dir", dir, "--node-name", "bench-peer-b",
		"--etcd-endpoints", "unix://" + filepath.Join(absData, "etcd", "client.sock"),
		"--http-addr", "127.0.0.1:0", "--tunnel-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0",
		"--advertise", "127.0.0.1:1", // connectors never stay on it
		"--flood-conns-per-addr", "-1", "--flood-new-conns-per-sec", "-1",
		"--flood-inflight-per-addr", "-1", "--flood-inflight", "-1"}
	b, err := startProc("edge-b", r.bin, r.env(), args...)
	if err != nil {
		return err
	}
	defer b.stop(5 * time.Second)
	m, err := b.waitMatch(ctx, reHTTPAddr, time.Minute)
	if err != nil {
		return err
	}
	forwarded := target{base: "http://" + m[1], host: p.hostname}
	if err := waitServing(ctx, forwarded, nil, r.cfg.startTimeout); err != nil {
		return fmt.Errorf("the second edge does not forward: %w\n%s", err, b.out.tail(10))
	}
	ways := []struct {
		name string
		t    target
	}{{"local", p.target}, {"forwarded", forwarded}}
	got := map[string]map[string]float64{}
	for _, w := range ways {
		v := map[string]float64{}
		got[w.name] = v
		c1, err := closedLoop(ctx, w.t, "/1k", 1, r.cfg.warmup, r.cfg.duration, nil)
		if err != nil {
			return fmt.Errorf("%s GETs c=1: %w", w.name, err)
		}
		c50, err := closedLoop(ctx, w.t, "/1k", 50, max(r.cfg.warmup, time.Second), r.cfg.duration, nil)
		if err != nil {
			return fmt.Errorf("%s GETs c=50: %w", w.name, err)
		}
		x, err := download(ctx, w.t, r.cfg.bigSize, r.cfg.bigTimeout)
		if err != nil {
			return fmt.Errorf("%s download: %w", w.name, err)
		}
		v["GET 1KiB c=1 p50"], v["GET 1KiB c=1 p99"] = us(c1.P50), us(c1.P99)
		v["GET 1KiB c=50 req/s"], v["GET 1KiB c=50 p99"] = c50.RequestsPerSecond, us(c50.P99)
		v["download MB/s"] = x.MBps()
		for _, k := range []string{"GET 1KiB c=1 p50", "GET 1KiB c=1 p99", "GET 1KiB c=50 p99"} {
			res.set(figPeer(w.name+" "+k), "µs", p.name, v[k])
		}
		res.set(figPeer(w.name+" GET 1KiB c=50 req/s"), "req/s", p.name, v["GET 1KiB c=50 req/s"])
		res.set(figPeer(w.name+" download "+sizeString(r.cfg.bigSize)), "MB/s", p.name, v["download MB/s"])
		r.cfg.logf("peer link, %s: c=1 p50 %s p99 %s; c=50 %.0f req/s p99 %s; download %.0f MB/s", w.name,
			c1.P50.Round(time.Microsecond), c1.P99.Round(time.Microsecond), c50.RequestsPerSecond, c50.P99.Round(time.Microsecond), x.MBps())
		for _, s := range []latencyStats{c1, c50} {
			if s.Errors > 0 {
				res.note(figPeer(w.name+" GET 1KiB c=50 req/s"), "req/s", p.name, fmt.Sprintf("%d errors; first: %v", s.Errors, s.firstErr))
				r.cfg.logf("peer link, %s: %d errors; first: %v; the second edge's last lines:\n%s", w.name, s.Errors, s.firstErr, b.out.tail(10))
			}
		}
	}
	l, f := got["local"], got["forwarded"]
	res.set(figPeer("c=1 p50 added"), "µs", p.name, f["GET 1KiB c=1 p50"]-l["GET 1KiB c=1 p50"])
	for _, k := range []string{"GET 1KiB c=1 p50", "GET 1KiB c=50 req/s", "GET 1KiB c=50 p99", "download MB/s"} {
		if l[k] > 0 {
			res.set(figPeer(k+" forwarded/local"), "ratio", p.name, f[k]/l[k])
		}
	}
	return nil
}

// copyCA puts the bench edge's CA into the data directory of another edge
// of its fleet, as `adit edge --join` would.
func copyCA(fromDataDir, toDataDir string) error {
	to := filepath.Join(toDataDir, "tls")
	if err := os.MkdirAll(to, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		mode os.FileMode
	}{{pki.CACertFile, 0o644}, {pki.CAKeyFile, 0o600}} {
		b, err := os.ReadFile(filepath.Join(fromDataDir, "tls", f.name))
		if err != nil {
			return err
		}
		if err := pki.WriteFileAtomic(filepath.Join(to, f.name), b, f.mode); err != nil {
			return err
		}
	}
	return nil
}
