package origin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/adit-dev/adit/ingress"
)

// helloSSEEvents is how many events /sse sends, one per helloSSEInterval.
const (
	helloSSEEvents   = 5
	helloSSEInterval = 100 * time.Millisecond
)

// helloServer is the in-process origin behind the hello_world service, on
// 127.0.0.1 with a port of the kernel's choosing.
type helloServer struct {
	srv     *http.Server
	started time.Time
	logger  *slog.Logger
	cancel  context.CancelFunc // ends handlers, hijacked WebSockets included
	served  chan struct{}      // closed when Serve returns

	mu       sync.Mutex
	closed   bool
	handlers sync.WaitGroup
}

// newHelloWorld starts the hello world server and returns a proxy to it.
func newHelloWorld(o ingress.OriginRequest, logger *slog.Logger) (HTTPService, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("origin: hello_world: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &helloServer{started: time.Now(), logger: logger, cancel: cancel, served: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/", h.page) // any path and method: the page shows them
	mux.HandleFunc("/uptime", h.uptime)
	mux.HandleFunc("/sse", h.sse)
	mux.HandleFunc("/ws", h.ws)
	h.srv = &http.Server{
		Handler:           h.track(mux),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(h.served)
		if err := h.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("hello_world server stopped", "err", err)
		}
	}()

	addr := ln.Addr().String()
	p, err := newProxy(proxyTarget{
		name: string(ingress.KindHelloWorld), kind: ingress.KindHTTP, scheme: "http",
		host: addr, network: "tcp", addr: addr,
	}, o, logger)
	if err != nil {
		h.close()
		return nil, err
	}
	p.onClose = h.close
	return p, nil
}

// track counts running handlers so close can wait for them.
func (h *helloServer) track(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			http.Error(w, "hello_world is shutting down", http.StatusServiceUnavailable)
			return
		}
		h.handlers.Add(1)
		h.mu.Unlock()
		defer h.handlers.Done()
		next.ServeHTTP(w, r)
	})
}

// close stops the server and waits for its handlers and its Serve goroutine.
func (h *helloServer) close() error {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.cancel()
	err := h.srv.Close()
	h.handlers.Wait()
	<-h.served
	return err
}

var helloPage = template.Must(template.New("hello").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>adit: hello world</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 50rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #ddd; vertical-align: top; }
th { width: 14rem; }
td { font-family: ui-monospace, monospace; word-break: break-all; }
pre { background: #f4f4f4; padding: .5rem; min-height: 1.5rem; }
</style>
</head>
<body>
<h1>Hello from adit's built-in hello world</h1>
<p>This page is served by the <code>hello_world</code> service of an adit connector.
If you can read it, your tunnel works: the request below went from your browser to
the edge, through the tunnel, to this connector.</p>
<h2>Your request</h2>
<table>
<tr><th>Method</th><td>{{.Method}}</td></tr>
<tr><th>Host</th><td>{{.Host}}</td></tr>
<tr><th>Path</th><td>{{.Path}}</td></tr>
{{if .Query}}<tr><th>Query</th><td>{{.Query}}</td></tr>{{end}}
</table>
<h2>Headers</h2>
<table>
{{range .Headers}}<tr><th>{{.Name}}</th><td>{{.Value}}</td></tr>
{{end}}</table>
<h2>Try more</h2>
<ul>
<li><a href="/uptime">/uptime</a>: how long this connector's hello world has run, as JSON.</li>
<li><a href="/sse">/sse</a>: a few server-sent events, one every 100ms. <button id="sse">Listen</button></li>
<li>/ws: a WebSocket that echoes what you send. <button id="ws">Send "hello"</button></li>
</ul>
<pre id="out"></pre>
<script>
const out = document.getElementById("out");
const log = (s) => { out.textContent += s + "\n"; };
document.getElementById("sse").onclick = () => {
  const es = new EventSource("/sse");
  es.onmessage = (e) => log("sse: " + e.data);
  es.addEventListener("done", () => { log("sse: done"); es.close(); });
  es.onerror = () => es.close();
};
document.getElementById("ws").onclick = () => {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  ws.onopen = () => ws.send("hello");
  ws.onmessage = (e) => { log("ws echo: " + e.data); ws.close(); };
  ws.onerror = () => log("ws: error");
};
</script>
</body>
</html>
`))

type helloHeader struct{ Name, Value string }

func (h *helloServer) page(w http.ResponseWriter, r *http.Request) {
	names := make([]string, 0, len(r.Header))
	for name := range r.Header {
		names = append(names, name)
	}
	slices.Sort(names)
	var headers []helloHeader
	for _, name := range names {
		for _, v := range r.Header[name] {
			headers = append(headers, helloHeader{name, v})
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	err := helloPage.Execute(w, struct {
		Method, Host, Path, Query string
		Headers                   []helloHeader
	}{r.Method, r.Host, r.URL.Path, r.URL.RawQuery, headers})
	if err != nil {
		h.logger.Debug("hello_world page", "err", err)
	}
}

func (h *helloServer) uptime(w http.ResponseWriter, _ *http.Request) {
	up := time.Since(h.started)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(struct {
		StartedAt     time.Time `json:"startedAt"`
		Uptime        string    `json:"uptime"`
		UptimeSeconds float64   `json:"uptimeSeconds"`
	}{h.started.UTC(), up.Round(time.Second).String(), up.Seconds()})
}

// sse sends helloSSEEvents events, one per helloSSEInterval, each flushed as sent,
// then a "done" event.
func (h *helloServer) sse(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(helloSSEInterval)
	defer tick.Stop()
	for i := 1; ; i++ {
		var err error
		if i <= helloSSEEvents {
			_, err = fmt.Fprintf(w, "id: %d\ndata: hello %d of %d at %s\n\n", i, i, helloSSEEvents, time.Now().UTC().Format(time.RFC3339Nano))
		} else {
			_, err = fmt.Fprint(w, "event: done\ndata: bye\n\n")
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil || i > helloSSEEvents {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}

// ws echoes every WebSocket message back until the client closes.
func (h *helloServer) ws(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered
	}
	defer c.CloseNow()
	ctx := r.Context()
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure || websocket.CloseStatus(err) == websocket.StatusGoingAway {
				c.Close(websocket.StatusNormalClosure, "")
			}
			return
		}
		if err := c.Write(ctx, typ, data); err != nil {
			return
		}
	}
}
