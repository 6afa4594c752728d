package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The flood scenario's attacker is a process of its own (this executable
// with roleEnv=flooder), as an attacker is never in its victim's process:
// the well-behaved client's latencies are then not its own process's
// scheduler and GC under the flood. It floods floodTargetEnv (Host
// floodHostEnv) from 127.0.0.3 with floodWorkersEnv connections, each
// sending as fast as it can, and opens floodIdleEnv idle connections from
// 127.0.0.4.
//
// It speaks on stdin and stdout, one line each way: "count N" is answered
// with "flooder count N OK REFUSED" (the answers so far); when stdin
// closes it stops, counts the idle connections the edge still holds open
// and prints "flooder done OK REFUSED HELD OPENED".
const (
	floodTargetEnv  = "ADIT_BENCH_FLOOD_TARGET"
	floodHostEnv    = "ADIT_BENCH_FLOOD_HOST"
	floodWorkersEnv = "ADIT_BENCH_FLOOD_WORKERS"
	floodIdleEnv    = "ADIT_BENCH_FLOOD_IDLE"
)

var (
	reFlooderReady = regexp.MustCompile(`flooder ready\n`)
	reFlooderDone  = regexp.MustCompile(`flooder done (\d+) (\d+) (\d+) (\d+)\n`)
)

// runFlooder is the flooder process; it returns the exit code.
func runFlooder() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	workers, err1 := strconv.Atoi(os.Getenv(floodWorkersEnv))
	idle, err2 := strconv.Atoi(os.Getenv(floodIdleEnv))
	base := os.Getenv(floodTargetEnv)
	if err1 != nil || err2 != nil || !strings.HasPrefix(base, "http://") {
		fmt.Fprintf(os.Stderr, "bench: flooder: want %s=http://..., %s and %s numbers\n", floodTargetEnv, floodWorkersEnv, floodIdleEnv)
		return 1
	}
	f := startFlooder(ctx, target{base: base, host: os.Getenv(floodHostEnv)}, workers, idle)
	fmt.Println("flooder ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if n, ok := strings.CutPrefix(in.Text(), "count "); ok {
			fmt.Printf("flooder count %s %d %d\n", n, f.ok.Load(), f.refused.Load())
		}
	}
	f.stop()
	fmt.Printf("flooder done %d %d %d %d\n", f.ok.Load(), f.refused.Load(), f.held, f.idleOpened)
	return 0
}

// flooderProc is a running flooder process, driven over its stdin.
type flooderProc struct {
	*proc
	stdin io.WriteCloser
	n     int // "count N" lines sent
}

// startFlooderProc starts a flooder process against t and waits until it
// floods.
func startFlooderProc(ctx context.Context, t target, cfg *config) (*flooderProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: flooder: %w", err)
	}
	p := newProc("flooder", exe, childEnv(roleEnv+"=flooder", floodTargetEnv+"="+t.base, floodHostEnv+"="+t.host,
		floodWorkersEnv+"="+strconv.Itoa(cfg.floodWorkers), floodIdleEnv+"="+strconv.Itoa(cfg.floodIdle)))
	stdin, err := p.cmd.StdinPipe() // closed by Wait
	if err != nil {
		return nil, fmt.Errorf("bench: flooder: %w", err)
	}
	if err := p.start(); err != nil {
		return nil, err
	}
	fp := &flooderProc{proc: p, stdin: stdin}
	if _, err := p.waitMatch(ctx, reFlooderReady, 30*time.Second); err != nil {
		fp.kill()
		return nil, err
	}
	return fp, nil
}

// count returns the flooder's answers so far: 200s, and the others
// (refused, failed).
func (fp *flooderProc) count(ctx context.Context) (ok, refused int64, err error) {
	fp.n++
	if _, err := fmt.Fprintf(fp.stdin, "count %d\n", fp.n); err != nil {
		return 0, 0, fmt.Errorf("bench: flooder: %w", err)
	}
	re := regexp.MustCompile(`flooder count ` + strconv.Itoa(fp.n) + ` (\d+) (\d+)\n`)
	m, err := fp.waitMatch(ctx, re, 10*time.Second)
	if err != nil {
		return 0, 0, err
	}
	ok, _ = strconv.ParseInt(m[1], 10, 64)
	refused, _ = strconv.ParseInt(m[2], 10, 64)
	return ok, refused, nil
}

// finish stops the flood and returns how many idle connections the edge
// held open, and how many were opened.
func (fp *flooderProc) finish(ctx context.Context) (held, opened int, err error) {
	fp.stdin.Close()
	m, err := fp.waitMatch(ctx, reFlooderDone, 30*time.Second)
	if err != nil {
		fp.kill()
		return 0, 0, err
	}
	held, _ = strconv.Atoi(m[3])
	opened, _ = strconv.Atoi(m[4])
	fp.stop(5 * time.Second)
	return held, opened, nil
}

func (fp *flooderProc) kill() {
	fp.stdin.Close()
	fp.stop(time.Second)
}

// flooder is one round's attack, in the flooder process: workers sending
// as fast as they can from one address, and idle connections opened from
// another.
type flooder struct {
	cancel           context.CancelFunc
	wg               sync.WaitGroup
	client           *http.Client
	ok, refused      atomic.Int64
	idle             []net.Conn
	idleOpened, held int
}

func startFlooder(ctx context.Context, t target, workers, idle int) *flooder {
	fctx, cancel := context.WithCancel(ctx)
	f := &flooder{cancel: cancel, client: clientFrom("127.0.0.3", workers)}
	for range workers {
		f.wg.Go(func() {
			for fctx.Err() == nil {
				req, err := t.request(fctx, "GET", "/1k", nil)
				if err != nil {
					return
				}
				resp, err := f.client.Do(req)
				if err != nil {
					f.refused.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					f.ok.Add(1)
				} else {
					f.refused.Add(1)
				}
			}
		})
	}
	f.wg.Go(func() {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 4)}, Timeout: time.Second}
		addr := strings.TrimPrefix(t.base, "http://")
		for i := 0; i < idle && fctx.Err() == nil; i++ {
			c, err := d.DialContext(fctx, "tcp", addr)
			if err != nil {
				continue
			}
			f.idle = append(f.idle, c)
		}
	})
	return f
}

// stop ends the attack and counts the idle connections the edge still
// held open (it closes those it refused).
func (f *flooder) stop() {
	f.cancel()
	f.wg.Wait()
	f.client.CloseIdleConnections()
	for _, c := range f.idle {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && isTimeout(err) {
			f.held++
		}
		c.Close()
	}
	f.idleOpened = len(f.idle)
}
