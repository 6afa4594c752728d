package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// target is where a path's requests go: a base URL (scheme://127.0.0.1:port)
// and the Host header to send (empty: the URL's).
type target struct {
	base   string
	host   string
	header http.Header // sent with every request (adit-quic-access's session cookie)
	tls    *tls.Config // for an https:// base (the https scenario)
}

func (t target) request(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, t.base+path, body)
	if err != nil {
		return nil, err
	}
	if t.host != "" {
		req.Host = t.host
	}
	for k, v := range t.header {
		req.Header[k] = v
	}
	return req, nil
}

// newClient returns the load generator's HTTP client: HTTP/1.1 keep-alive
// with an idle pool as large as the concurrency, no compression, no proxy.
func newClient(concurrency int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        0, // no overall limit
			MaxIdleConnsPerHost: max(concurrency, 2),
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// latencyStats summarises a sorted latency sample.
type latencyStats struct {
	N              int
	Errors         int64
	Elapsed        time.Duration
	P50, P99, P999 time.Duration
	// LateP99 is how late the pacer of an open-loop run handed requests
	// over, at the 99th percentile (zero for a closed loop).
	LateP99           time.Duration
	Min, Max, Mean    time.Duration
	firstErr          error
	RequestsPerSecond float64
	cpu               time.Duration // wrk: the CPU time of the wrk process; 0 for the Go client
}

func summarise(samples []time.Duration, errs int64, elapsed time.Duration, firstErr error) latencyStats {
	slices.Sort(samples)
	s := latencyStats{N: len(samples), Errors: errs, Elapsed: elapsed, firstErr: firstErr}
	if elapsed > 0 {
		s.RequestsPerSecond = float64(len(samples)) / elapsed.Seconds()
	}
	if len(samples) == 0 {
		return s
	}
	var sum time.Duration
	for _, d := range samples {
		sum += d
	}
	s.Min, s.Max, s.Mean = samples[0], samples[len(samples)-1], sum/time.Duration(len(samples))
	s.P50, s.P99, s.P999 = quantile(samples, 0.50), quantile(samples, 0.99), quantile(samples, 0.999)
	return s
}

// quantile is the nearest-rank q-quantile of a sorted, non-empty sample.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// errCounter keeps a count and the first error.
type errCounter struct {
	n     atomic.Int64
	once  sync.Once
	first error
}

func (e *errCounter) add(err error) {
	e.n.Add(1)
	e.once.Do(func() { e.first = err })
}

// getOnce sends one GET and reads the whole answer; non-200 is an error.
func getOnce(c *http.Client, req *http.Request, buf []byte) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	for {
		_, err := resp.Body.Read(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// closedLoop runs concurrency workers, each sending the next GET as soon as
// the last one is answered, for warmup+duration. Only requests that start
// after the warm-up and finish within the duration are counted, so the
// measured window has no ramp-up and no tail-off. If mark is not nil, it
// is called when the measured window starts and again when it ends (from
// another goroutine; closedLoop returns after both), to read counters
// over the same window.
func closedLoop(ctx context.Context, t target, path string, concurrency int, warmup, duration time.Duration, mark func()) (latencyStats, error) {
	c := newClient(concurrency, 30*time.Second)
	c.Transport.(*http.Transport).TLSClientConfig = t.tls
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, warmup+duration+35*time.Second)
	defer cancel()
	start := time.Now()
	from, until := start.Add(warmup), start.Add(warmup+duration)
	var errs errCounter
	samples := make([][]time.Duration, concurrency)
	var marks sync.WaitGroup
	if mark != nil {
		marks.Go(func() {
			for _, at := range []time.Time{from, until} {
				select {
				case <-time.After(time.Until(at)):
					mark()
				case <-ctx.Done():
					return
				}
			}
		})
	}
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Go(func() {
			req, err := t.request(ctx, "GET", path, nil)
			if err != nil {
				errs.add(err)
				return
			}
			buf := make([]byte, 32<<10)
			own := make([]time.Duration, 0, 1024)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(until) {
					break
				}
				err := getOnce(c, req, buf)
				t1 := time.Now()
				if t0.Before(from) || t1.After(until) {
					continue
				}
				if err != nil {
					errs.add(err)
					continue
				}
				own = append(own, t1.Sub(t0))
			}
			samples[w] = own
		})
	}
	wg.Wait()
	marks.Wait()
	if err := ctx.Err(); err != nil {
		return latencyStats{}, err
	}
	s := summarise(slices.Concat(samples...), errs.n.Load(), duration, errs.first)
	if s.N == 0 {
		return s, fmt.Errorf("no successful request (%d errors; first: %v)", s.Errors, errs.first)
	}
	return s, nil
}

// fixedRate sends rate GETs per second for duration, open loop: request i
// is due at start+i/rate whatever happened to the ones before it, and its
// latency counts from when the pacer handed it to the workers, so a stall
// is not hidden by the requests it delayed (no coordinated omission): a
// request that waits for a free worker waits on the clock. The pacer's own
// lateness is not counted: a Go timer on an idle machine fires 0.5–1 ms
// late (the runtime sleeps in epoll with a timeout in milliseconds), which
// would otherwise be most of each request's latency; it is reported as
// LateP99. sample is called every 500ms while it runs.
func fixedRate(ctx context.Context, t target, path string, rate int, duration time.Duration, sample func()) (latencyStats, error) {
	const workers = 256
	c := newClient(workers, 30*time.Second)
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, duration+35*time.Second)
	defer cancel()
	jobs := make(chan time.Time, rate) // when each request was handed over
	var errs errCounter
	samples := make([][]time.Duration, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			req, err := t.request(ctx, "GET", path, nil)
			if err != nil {
				errs.add(err)
				for range jobs {
				}
				return
			}
			buf := make([]byte, 32<<10)
			var own []time.Duration
			for due := range jobs {
				if err := getOnce(c, req, buf); err != nil {
					errs.add(err)
					continue
				}
				own = append(own, time.Since(due))
			}
			samples[w] = own
		})
	}

	start := time.Now()
	interval := time.Second / time.Duration(rate)
	nextSample := start
	sent := 0
	var late []time.Duration
	for ctx.Err() == nil {
		now := time.Now()
		if now.Sub(start) >= duration {
			break
		}
		if sample != nil && !now.Before(nextSample) {
			sample()
			nextSample = nextSample.Add(500 * time.Millisecond)
		}
		due := int(now.Sub(start)/interval) + 1
		for ; sent < due; sent++ {
			handed := time.Now()
			late = append(late, handed.Sub(start.Add(time.Duration(sent)*interval)))
			jobs <- handed
		}
		time.Sleep(time.Until(start.Add(time.Duration(sent) * interval)))
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return latencyStats{}, err
	}
	s := summarise(slices.Concat(samples...), errs.n.Load(), duration, errs.first)
	if len(late) > 0 {
		slices.Sort(late)
		s.LateP99 = quantile(late, 0.99)
	}
	if s.N == 0 {
		return s, fmt.Errorf("no successful request (%d errors; first: %v)", s.Errors, errs.first)
	}
	return s, nil
}

// transfer is the result of one big download or upload.
type transfer struct {
	Bytes   int64
	Elapsed time.Duration
	Partial bool // the time limit cut it short
}

// MBps is megabytes (10^6 bytes) per second.
func (x transfer) MBps() float64 {
	if x.Elapsed <= 0 {
		return 0
	}
	return float64(x.Bytes) / 1e6 / x.Elapsed.Seconds()
}

// download fetches size bytes on one stream. If limit passes first, it
// returns what was read so far, marked Partial.
func download(ctx context.Context, t target, size int64, limit time.Duration) (transfer, error) {
	c := newClient(1, 0)
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	req, err := t.request(ctx, "GET", "/download?size="+strconv.FormatInt(size, 10), nil)
	if err != nil {
		return transfer{}, err
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return transfer{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return transfer{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	buf := make([]byte, 256<<10)
	var x transfer
	for {
		n, err := resp.Body.Read(buf)
		x.Bytes += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			x.Elapsed = time.Since(start)
			if ctx.Err() != nil && x.Bytes > 0 {
				x.Partial = true
				return x, nil
			}
			return x, err
		}
	}
	x.Elapsed = time.Since(start)
	if x.Bytes != size {
		return x, fmt.Errorf("read %d bytes, want %d", x.Bytes, size)
	}
	return x, nil
}

// countingReader yields n bytes of a pattern and counts what was read.
type countingReader struct {
	left int64
	read atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(int64(len(p)), r.left)], chunk256k)
	r.left -= int64(n)
	r.read.Add(int64(n))
	return n, nil
}

// upload sends size bytes on one stream; the origin answers the count it
// received. If limit passes first, it returns the bytes sent so far, marked
// Partial.
func upload(ctx context.Context, t target, size int64, limit time.Duration) (transfer, error) {
	c := newClient(1, 0)
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	body := &countingReader{left: size}
	req, err := t.request(ctx, "POST", "/upload", body)
	if err != nil {
		return transfer{}, err
	}
	req.ContentLength = size
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		x := transfer{Bytes: body.read.Load(), Elapsed: time.Since(start)}
		if ctx.Err() != nil && x.Bytes > 0 {
			x.Partial = true
			return x, nil
		}
		return x, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	x := transfer{Bytes: size, Elapsed: time.Since(start)}
	if err != nil {
		return x, err
	}
	if resp.StatusCode != http.StatusOK {
		return x, fmt.Errorf("status %d: %.100s", resp.StatusCode, answer)
	}
	if got, _ := strconv.ParseInt(string(answer), 10, 64); got != size {
		return x, fmt.Errorf("origin received %s bytes, want %d", answer, size)
	}
	return x, nil
}

// openWebSockets opens n WebSockets to t's /ws, dialing with parallel
// workers, and checks each with one echo. It returns the open ones, and
// the first error if some failed.
func openWebSockets(ctx context.Context, t target, n, parallel int) ([]*websocket.Conn, error) {
	hc := &http.Client{Transport: &http.Transport{
		Proxy:              nil,
		DialContext:        (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		DisableCompression: true,
	}}
	url := "ws" + t.base[len("http"):] + "/ws"
	conns := make([]*websocket.Conn, n)
	var next atomic.Int64
	var errs errCounter
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := dialEcho(ctx, hc, url, t.host)
				if err != nil {
					errs.add(err)
					continue
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	open := slices.DeleteFunc(conns, func(c *websocket.Conn) bool { return c == nil })
	if errs.first != nil {
		return open, fmt.Errorf("%d of %d failed; first: %w", errs.n.Load(), n, errs.first)
	}
	return open, ctx.Err()
}

func dialEcho(ctx context.Context, hc *http.Client, url, host string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc, Host: host})
	if err != nil {
		return nil, err
	}
	const ping = "ping"
	if err := c.Write(ctx, websocket.MessageText, []byte(ping)); err != nil {
		c.CloseNow()
		return nil, err
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		c.CloseNow()
		return nil, err
	}
	if string(got) != ping {
		c.CloseNow()
		return nil, errors.New("websocket echo answered " + strconv.Quote(string(got)))
	}
	return c, nil
}

// closeAll closes WebSockets in parallel.
func closeAll(conns []*websocket.Conn) {
	var wg sync.WaitGroup
	const parallel = 64
	for w := range parallel {
		wg.Go(func() {
			for i := w; i < len(conns); i += parallel {
				conns[i].CloseNow()
			}
		})
	}
	wg.Wait()
}
