package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"
)

// origin is the service every path ends at: an HTTP server in the harness
// process.
//
//	/1k              a 1 KiB body
//	/download?size=N N bytes, streamed, with a Content-Length
//	/upload          reads and discards the body; answers its size
//	/ws              WebSocket echo
type origin struct {
	srv  *http.Server
	ln   net.Listener
	ctx  context.Context // ends every WebSocket when cancelled
	stop context.CancelFunc
	wg   sync.WaitGroup // WebSocket handlers (hijacked, so srv.Close misses them)
	// accepted counts the connections the origin has accepted: a path that
	// keeps its connections to the origin alive adds few per run.
	accepted atomic.Int64
	// served1k counts the answers to /1k: the requests a small-GET run sent,
	// warm-up included, to divide a process's allocations by.
	served1k atomic.Int64
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

func startOrigin(addr string) (*origin, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bench: origin: %w", err)
	}
	o := &origin{ln: ln}
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
	go o.srv.Serve(ln)
	return o, nil
}

// URL is the origin's base URL.
func (o *origin) URL() string { return "http://" + o.ln.Addr().String() }

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
	o.wg.Wait()
}
