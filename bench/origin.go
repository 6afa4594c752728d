package main

import (
	"context"
	"encoding/json"
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

	"github.com/coder/websocket"
)

// The origin is the service every path ends at: an HTTP server in its own
// process, so that the load generator and the origin do not share a
// scheduler (as a client and a server on two machines would not). The
// harness starts it by running its own executable with roleEnv=origin
// (and the listen address in originAddrEnv); main and TestMain check
// roleEnv first.
//
//	/1k              a 1 KiB body
//	/download?size=N N bytes, streamed, with a Content-Length
//	/upload          reads and discards the body; answers its size
//	/ws              WebSocket echo
//
// On a second listener, so that reading them opens no connection the
// counters see:
//
//	/_bench/stats    originStats as JSON
//
// The origin prints both addresses on stdout (reOrigin) and exits when its
// stdin closes or on SIGTERM.
const (
	roleEnv       = "ADIT_BENCH_ROLE"
	originAddrEnv = "ADIT_BENCH_ORIGIN_ADDR"
	// originTLSEnv, if set to "CERTFILE:KEYFILE", makes the origin serve
	// HTTPS with that certificate (the https scenario's reference).
	originTLSEnv = "ADIT_BENCH_ORIGIN_TLS"
)

var reOrigin = regexp.MustCompile(`origin listening on (\S+), stats on (\S+)\n`)

// originStats are the origin's counters since it started.
type originStats struct {
	// Accepted counts the connections the origin has accepted: a path
	// that keeps its connections to the origin alive adds few per run.
	Accepted int64 `json:"accepted"`
	// Served1k counts the answers to /1k: the requests a small-GET run
	// sent, to divide a process's allocations by.
	Served1k int64 `json:"served1k"`
}

// origin is the server side, in the origin process.
type origin struct {
	srv, stats *http.Server
	addr       net.Addr        // of srv
	statsAddr  net.Addr        // of stats
	ctx        context.Context // ends every WebSocket when cancelled
	stop       context.CancelFunc
	wg         sync.WaitGroup // WebSocket handlers (hijacked, so srv.Close misses them)
	accepted   atomic.Int64
	served1k   atomic.Int64
}

var (
	body1k    = makePattern(1 << 10)
	chunk64k  = makePattern(64 << 10)
	chunk256k = makePattern(256 << 10)
)

func makePattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

// runOrigin is the origin process: it serves on os.Getenv(originAddrEnv)
// until stdin closes or a SIGTERM or SIGINT, and returns the exit code.
func runOrigin() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	certFile, keyFile, _ := strings.Cut(os.Getenv(originTLSEnv), ":")
	o, err := serveOrigin(os.Getenv(originAddrEnv), certFile, keyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	scheme := "http"
	if certFile != "" {
		scheme = "https"
	}
	fmt.Printf("origin listening on %s://%s, stats on http://%s\n", scheme, o.addr, o.statsAddr)
	<-ctx.Done()
	o.close()
	return 0
}

// serveOrigin starts the origin's servers: the endpoints on addr (over
// TLS with certFile and keyFile, if set), the stats on 127.0.0.1:0.
func serveOrigin(addr, certFile, keyFile string) (*origin, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bench: origin: %w", err)
	}
	statsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("bench: origin: %w", err)
	}
	o := &origin{addr: ln.Addr(), statsAddr: statsLn.Addr()}
	o.ctx, o.stop = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /1k", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", "1024")
		w.Write(body1k)
		o.served1k.Add(1)
	})
	mux.HandleFunc("GET /download", o.download)
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, n)
	})
	mux.HandleFunc("GET /ws", o.ws)
	o.srv = &http.Server{Handler: mux, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			o.accepted.Add(1)
		}
	}}
	o.stats = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_bench/stats" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(originStats{Accepted: o.accepted.Load(), Served1k: o.served1k.Load()})
	})}
	if certFile != "" {
		go o.srv.ServeTLS(ln, certFile, keyFile)
	} else {
		go o.srv.Serve(ln)
	}
	go o.stats.Serve(statsLn)
	return o, nil
}

func (o *origin) download(w http.ResponseWriter, r *http.Request) {
	size, err := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
	if err != nil || size < 0 {
		http.Error(w, "size: want a byte count", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	for size > 0 {
		n := min(size, int64(len(chunk64k)))
		if _, err := w.Write(chunk64k[:n]); err != nil {
			return
		}
		size -= n
	}
}

func (o *origin) ws(w http.ResponseWriter, r *http.Request) {
	o.wg.Add(1)
	defer o.wg.Done()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	for {
		typ, msg, err := c.Read(o.ctx)
		if err != nil {
			return
		}
		if err := c.Write(o.ctx, typ, msg); err != nil {
			return
		}
	}
}

func (o *origin) close() {
	o.stop()
	o.srv.Close()
	o.stats.Close()
	o.wg.Wait()
}

// originProc is the origin process, seen from the harness.
type originProc struct {
	*proc
	url, statsURL string
	client        *http.Client   // for the stats
	stdin         io.WriteCloser // closing it stops the origin too
}

// startOrigin starts the origin process listening on addr. Its stdin is a
// pipe the harness holds: if the harness dies, the origin exits too.
func startOrigin(ctx context.Context, addr string, env ...string) (*originProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: origin: %w", err)
	}
	p := newProc("origin", exe, childEnv(append([]string{roleEnv + "=origin", originAddrEnv + "=" + addr}, env...)...))
	stdin, err := p.cmd.StdinPipe() // closed by Wait
	if err != nil {
		return nil, fmt.Errorf("bench: origin: %w", err)
	}
	if err := p.start(); err != nil {
		return nil, err
	}
	m, err := p.waitMatch(ctx, reOrigin, 30*time.Second)
	if err != nil {
		p.stop(time.Second)
		return nil, err
	}
	return &originProc{proc: p, url: m[1], statsURL: m[2] + "/_bench/stats", client: newClient(1, 5*time.Second), stdin: stdin}, nil
}

// URL is the origin's base URL.
func (o *originProc) URL() string { return o.url }

// stats reads the origin's counters.
func (o *originProc) stats() (originStats, error) {
	var s originStats
	resp, err := o.client.Get(o.statsURL)
	if err != nil {
		return s, fmt.Errorf("bench: origin stats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("bench: origin stats: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("bench: origin stats: %w", err)
	}
	return s, nil
}
