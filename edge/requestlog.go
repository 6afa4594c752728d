package edge

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
)

// The live request log: every public request routed to a tunnel, once
// answered, is logged at info level when Config.LogRequests, and sent to
// the subscribers of GET /v1/tunnels/{id}/requests (`adit tail`). A
// subscriber has a bounded buffer: when it falls behind, entries are
// dropped for it and it is told how many; publishing never blocks, so a
// slow reader never slows a request. With no subscriber and no logging a
// request costs one atomic load here.

const (
	// tailBuffer is how many entries wait for one subscriber at most.
	tailBuffer = 256
	// maxTailSubscribers bounds the streams one edge serves at once.
	maxTailSubscribers = 64
)

// requestLog fans finished requests out to the log and the subscribers.
type requestLog struct {
	node   string
	router router
	log    *slog.Logger // nil unless Config.LogRequests

	active atomic.Int32 // subscribers; with log == nil, zero means no work
	mu     sync.RWMutex
	subs   map[*tailSub]struct{}
	closed chan struct{} // closed when the API server shuts down: streams end
	once   sync.Once
}

func newRequestLog(node string, rt router, log *slog.Logger) *requestLog {
	return &requestLog{node: node, router: rt, log: log, subs: map[*tailSub]struct{}{}, closed: make(chan struct{})}
}

// openRequestLog sets up the request log and its API endpoint; it needs
// the control service (listen).
func (s *Server) openRequestLog() {
	var log *slog.Logger
	if s.cfg.LogRequests {
		log = s.log
	}
	s.reqLog = newRequestLog(s.node, s.state, log)
	s.metrics.reqLog = s.reqLog
	s.endpoints = append(s.endpoints, s.reqLog.endpoint(s.svc))
}

// tailSub is one subscriber: its filters, its buffer and what it missed.
type tailSub struct {
	tunnelID string
	status   control.StatusFilter
	hosts    map[string]bool // empty: every host
	ch       chan control.RequestLogEntry
	dropped  atomic.Int64
	wake     chan struct{} // one slot: something was dropped
}

func (s *tailSub) match(e *control.RequestLogEntry) bool {
	return e.TunnelID == s.tunnelID && s.status.Match(e.Status) && (len(s.hosts) == 0 || s.hosts[e.Host])
}

// wanted reports whether finished requests need to be looked at at all.
func (l *requestLog) wanted() bool { return l != nil && (l.log != nil || l.active.Load() > 0) }

// finished records a request answered with status; start is when it
// arrived and h its response header (which carries the request ID).
func (l *requestLog) finished(r *http.Request, status int, start time.Time, h http.Header) {
	if !l.wanted() {
		return
	}
	tunnelID, ok := l.router.Route(r.Host)
	if !ok {
		return // not a tunnel's request (unknown hostname)
	}
	e := control.RequestLogEntry{
		Time:       time.Now().UTC(),
		TunnelID:   tunnelID,
		Host:       routedHost(r.Host),
		Method:     r.Method,
		Path:       r.URL.Path,
		Status:     status,
		DurationMS: float64(time.Since(start).Microseconds()) / 1000,
		RequestID:  h.Get(RequestIDHeader),
		EdgeNode:   l.node,
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		e.ClientIP = ap.Addr().Unmap().String()
	}
	if l.log != nil {
		l.log.Info("request", "tunnel", e.TunnelID, "host", e.Host, "method", e.Method, "path", e.Path,
			"status", e.Status, "duration_ms", e.DurationMS, "request_id", e.RequestID, "client", e.ClientIP)
	}
	if l.active.Load() == 0 {
		return
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	for s := range l.subs {
		if !s.match(&e) {
			continue
		}
		select {
		case s.ch <- e:
		default:
			s.dropped.Add(1)
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}
}

func (l *requestLog) subscribe(s *tailSub) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.subs) >= maxTailSubscribers {
		return false
	}
	l.subs[s] = struct{}{}
	l.active.Add(1)
	return true
}

func (l *requestLog) unsubscribe(s *tailSub) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.subs, s)
	l.active.Add(-1)
}

// close ends every stream (the API server is shutting down).
func (l *requestLog) close() { l.once.Do(func() { close(l.closed) }) }

// tailKeepalive is how often an idle stream gets an empty line, so that
// proxies and the client see it alive.
const tailKeepalive = 30 * time.Second

// endpoint is GET /v1/tunnels/{id}/requests: the stream of this edge's
// requests for the tunnel (docs/openapi.yaml).
func (l *requestLog) endpoint(svc *controlserver.Service) controlserver.Endpoint {
	return controlserver.Endpoint{
		Pattern: "GET /v1/tunnels/{id}/requests",
		Handle: func(w http.ResponseWriter, r *http.Request) error {
			t, err := svc.GetTunnel(r.Context(), r.PathValue("id"))
			if err != nil {
				return err
			}
			q := r.URL.Query()
			status, err := control.ParseStatusFilter(splitList(q.Get("status")))
			if err != nil {
				return err
			}
			s := &tailSub{tunnelID: t.ID, status: status, hosts: map[string]bool{},
				ch: make(chan control.RequestLogEntry, tailBuffer), wake: make(chan struct{}, 1)}
			hosts := splitList(q.Get("host"))
			if len(hosts) > control.MaxTailFilters {
				return control.Errorf(control.ErrInvalid, "host: %d filters, the limit is %d", len(hosts), control.MaxTailFilters)
			}
			for _, h := range hosts {
				s.hosts[routedHost(h)] = true
			}
			if !l.subscribe(s) {
				return &controlserver.APIError{Status: http.StatusServiceUnavailable, Code: "internal",
					Msg: "this edge already serves the most request streams it will; try again later"}
			}
			defer l.unsubscribe(s)
			return l.stream(w, r, s)
		},
	}
}

// stream writes s's entries as JSON lines until the client goes away or
// the server shuts down.
func (l *requestLog) stream(w http.ResponseWriter, r *http.Request, s *tailSub) error {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	if err := rc.Flush(); err != nil {
		return nil
	}
	keepalive := time.NewTicker(tailKeepalive)
	defer keepalive.Stop()
	for {
		var first *control.RequestLogEntry
		keep := false
		select {
		case <-r.Context().Done():
			return nil
		case <-l.closed:
			return nil
		case <-keepalive.C:
			keep = true
		case e := <-s.ch:
			first = &e
		case <-s.wake:
		}
		if keep && enc.Encode(control.RequestLogLine{}) != nil {
			return nil
		}
		if first != nil && enc.Encode(control.RequestLogLine{RequestLogEntry: first}) != nil {
			return nil
		}
		// What else waits, then what was dropped after it.
		for more := len(s.ch); more > 0; more-- {
			e := <-s.ch
			if enc.Encode(control.RequestLogLine{RequestLogEntry: &e}) != nil {
				return nil
			}
		}
		if n := s.dropped.Swap(0); n > 0 {
			if enc.Encode(control.RequestLogLine{Dropped: n}) != nil {
				return nil
			}
		}
		if rc.Flush() != nil {
			return nil
		}
	}
}

// splitList splits a comma-separated query value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
