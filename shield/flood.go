package shield

import (
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/adit-dev/adit/edge/layer"
	"github.com/adit-dev/adit/internal/logs"
	"github.com/adit-dev/adit/internal/ratelog"
)

// FloodConfig sets the flood limits of one edge. A client address is an
// IPv4 address or an IPv6 /64. A negative cap turns that cap off.
type FloodConfig struct {
	// MaxConnsPerAddr caps a client address's open connections. If zero,
	// 4096 (an office or a carrier NAT is one address).
	MaxConnsPerAddr int
	// NewConnsPerSecond caps the connections a client address opens per
	// second, with bursts of NewConnsBurst. If zero, 1000 and 4096.
	NewConnsPerSecond float64
	NewConnsBurst     int
	// MaxInflightPerAddr caps a client address's requests in flight
	// (WebSocket and other upgraded connections count while open). If
	// zero, 4096.
	MaxInflightPerAddr int
	// MaxInflight caps the edge's requests in flight. When it is reached,
	// a request is shed only if its client sends at least the mean rate of
	// the clients with requests in flight (requests per second, counted
	// over a sliding second, shed ones included): the heaviest senders are
	// shed first, and one flooding address cannot starve the others. If
	// zero, 16384.
	MaxInflight int
	// MaxAddrs bounds the client addresses tracked; past it a new address
	// goes uncapped until others are forgotten (counted as "untracked").
	// If zero, 100,000.
	MaxAddrs int
	// ContendedRatio bounds what one client address is served while the
	// edge is contended: at most this many times the requests all the
	// other addresses send (per second, over a sliding second, shed ones
	// included), and at least MinRatePerAddr. Past it, the address's
	// requests are shed (429, held like every shed answer, so a flooder's
	// closed loop slows down with them): a flooder is served a bounded
	// multiple of the others' traffic, whatever the edge's capacity, and
	// pays for the rest itself; a client that sends less than the others
	// together is never shed by it, nor one while the others send less
	// than MinRatePerAddr together. The edge counts as contended from the
	// moment it is saturated (its goroutines wait for a CPU past
	// ContendedWait, or its requests in flight reach half of
	// MaxInflight) until ContendedFor has passed without that: a quiet
	// edge limits no one. If zero, 2; negative: no such bound.
	ContendedRatio float64
	// MinRatePerAddr is the rate (requests per second) every address may
	// have admitted while the edge is contended, whatever its share; and
	// ContendedRatio applies only while the others send at least this
	// much together. If zero, 50.
	MinRatePerAddr float64
	// ContendedFor is how long the edge counts as contended after it was
	// last saturated. If zero, 10s.
	ContendedFor time.Duration
	// ContendedWait is the wait for a CPU that makes the edge saturated:
	// every 200ms the edge reads how long its goroutines were runnable
	// before they ran (the Go runtime's /sched/latencies), and if a tenth
	// of them (at least 100) waited this long or longer, it is saturated,
	// whatever it is busy with and whoever else takes its CPUs. It is the
	// signal that holds at the default MaxInflight: a flood saturates the
	// CPUs with a few hundred requests in flight, and what they wait for
	// is the CPU. If zero, 2ms; negative: only MaxInflight saturates.
	ContendedWait time.Duration
}

func (c FloodConfig) withDefaults() FloodConfig {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.MaxConnsPerAddr, 4096)
	def(&c.MaxInflightPerAddr, 4096)
	def(&c.MaxInflight, 16384)
	def(&c.MaxAddrs, 100_000)
	if c.NewConnsPerSecond == 0 {
		c.NewConnsPerSecond = 1000
	}
	def(&c.NewConnsBurst, 4096)
	if c.ContendedRatio == 0 {
		c.ContendedRatio = 2
	}
	if c.MinRatePerAddr == 0 {
		c.MinRatePerAddr = 50
	}
	if c.ContendedFor == 0 {
		c.ContendedFor = 10 * time.Second
	}
	if c.ContendedWait == 0 {
		c.ContendedWait = 2 * time.Millisecond
	}
	return c
}

// Flood enforces the flood limits: a layer.ConnFilter for the
// connection caps and a layer.Layer for the requests in flight. Every
// shedding decision is counted in adit_edge_flood_decisions_total by
// reason: conns, conn_rate, inflight_addr, inflight_global, untracked.
type Flood struct {
	cfg   FloodConfig
	quiet *slog.Logger

	mu       sync.Mutex
	addrs    map[netip.Addr]*floodAddr
	total    int          // requests in flight
	active   int          // addresses with requests in flight
	rate     arrivals     // every request's arrival
	admitted arrivals     // the requests admitted
	held     atomic.Int64 // shed answers being held (shed)
	// contendedUntil is when the edge stops counting as contended (the
	// per-address budgets apply until then), in ns since the epoch.
	contendedUntil int64

	conns, connRate, inflightAddr, inflightGlobal, rateAddr, untracked prometheus.Counter
	stop                                                               chan struct{}
	stopped                                                            chan struct{}
	// waits reads the q-quantile of the waits for a CPU since its last
	// call, and how many there were (schedWait.read; tests fake it).
	waits func(q float64) (time.Duration, uint64)
}

type floodAddr struct {
	conns    int
	inflight int
	newConns *rate.Limiter
	rate     arrivals
	admitted arrivals // the requests admitted
}

// arrivals counts requests over a sliding second: the current second's
// count plus the previous one's, weighted by how much of it is left.
type arrivals struct {
	sec       int64 // the current second, since the epoch
	cur, prev float64
}

func (a *arrivals) add(now int64) {
	a.roll(now)
	a.cur++
}

func (a *arrivals) roll(now int64) {
	sec := now / int64(time.Second)
	if sec != a.sec {
		if sec == a.sec+1 {
			a.prev = a.cur
		} else {
			a.prev = 0
		}
		a.cur, a.sec = 0, sec
	}
}

// perSecond is the rate over the sliding second ending at now.
func (a *arrivals) perSecond(now int64) float64 {
	a.roll(now)
	frac := float64(now%int64(time.Second)) / float64(time.Second)
	return a.prev*(1-frac) + a.cur
}

var (
	_ layer.Layer      = (*Flood)(nil)
	_ layer.ConnFilter = (*Flood)(nil)
)

// NewFlood returns the flood limits of cfg.
func NewFlood(deps layer.Deps, cfg FloodConfig) (*Flood, error) {
	return newFlood(deps, cfg, newSchedWait().read)
}

// The saturation signal: every waitEvery, the waitQ-quantile of the waits
// for a CPU, over at least waitMinEvents of them.
const (
	waitEvery     = 200 * time.Millisecond
	waitQ         = 0.9
	waitMinEvents = 100
)

func newFlood(deps layer.Deps, cfg FloodConfig, waits func(q float64) (time.Duration, uint64)) (*Flood, error) {
	d, err := newDecisions(deps.Metrics, "flood", "Connections and requests the flood limits shed, by reason.")
	if err != nil {
		return nil, err
	}
	f := &Flood{cfg: cfg.withDefaults(), quiet: ratelog.NewLimiter(10 * time.Second).Logger(logs.Component(deps.Logger, "shield").With("layer", "flood")),
		addrs: map[netip.Addr]*floodAddr{},
		conns: d.counter("conns"), connRate: d.counter("conn_rate"), inflightAddr: d.counter("inflight_addr"),
		inflightGlobal: d.counter("inflight_global"), rateAddr: d.counter("rate_addr"), untracked: d.counter("untracked"),
		stop: make(chan struct{}), stopped: make(chan struct{}), waits: waits}
	go f.sweep()
	return f, nil
}

// Name implements layer.Layer.
func (f *Flood) Name() string { return "flood" }

// Close implements layer.Layer.
func (f *Flood) Close() error {
	close(f.stop)
	<-f.stopped
	return nil
}

// floodKey is the address a client is counted as: IPv6 by /64.
func floodKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// get returns the state of key, creating it; nil when MaxAddrs are
// tracked. Called with f.mu held.
func (f *Flood) get(key netip.Addr) *floodAddr {
	a := f.addrs[key]
	if a == nil {
		if len(f.addrs) >= f.cfg.MaxAddrs {
			return nil
		}
		a = &floodAddr{}
		if f.cfg.NewConnsPerSecond > 0 {
			a.newConns = rate.NewLimiter(rate.Limit(f.cfg.NewConnsPerSecond), f.cfg.NewConnsBurst)
		}
		f.addrs[key] = a
	}
	return a
}

// Allow implements layer.ConnFilter: the caps on open and new connections.
func (f *Flood) Allow(ip netip.Addr) (func(), bool) {
	key := floodKey(ip)
	f.mu.Lock()
	a := f.get(key)
	if a == nil {
		f.mu.Unlock()
		f.untracked.Inc()
		return nil, true
	}
	if f.cfg.MaxConnsPerAddr > 0 && a.conns >= f.cfg.MaxConnsPerAddr {
		f.mu.Unlock()
		f.conns.Inc()
		f.quiet.Info("connection refused: too many open from one address", "addr", key, "cap", f.cfg.MaxConnsPerAddr)
		return nil, false
	}
	if a.newConns != nil && !a.newConns.Allow() {
		f.mu.Unlock()
		f.connRate.Inc()
		f.quiet.Info("connection refused: one address opens too many per second", "addr", key)
		return nil, false
	}
	a.conns++
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		a.conns--
		f.mu.Unlock()
	}, true
}

// Crowded reports whether ip's address holds half its cap of open
// connections, or has used half its allowance of new ones: the edge then
// asks a QUIC connection attempt from it to prove its source address
// before it counts (a forged one would spend the address's caps).
func (f *Flood) Crowded(ip netip.Addr) bool {
	key := floodKey(ip)
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.addrs[key]
	if a == nil {
		return false
	}
	if f.cfg.MaxConnsPerAddr > 0 && 2*a.conns >= f.cfg.MaxConnsPerAddr {
		return true
	}
	return a.newConns != nil && 2*a.newConns.Tokens() < float64(f.cfg.NewConnsBurst)
}

// Wrap implements layer.Layer: the caps on requests in flight.
func (f *Flood) Wrap(next layer.Handler) layer.Handler {
	return layer.HandlerFunc(func(w http.ResponseWriter, r *http.Request, req *layer.Request) {
		key := floodKey(req.ClientIP)
		now := time.Now().UnixNano()
		f.mu.Lock()
		a := f.get(key)
		f.rate.add(now)
		if a != nil {
			a.rate.add(now)
		}
		reason := ""
		switch {
		case a != nil && f.cfg.MaxInflightPerAddr > 0 && a.inflight >= f.cfg.MaxInflightPerAddr:
			reason = "inflight_addr"
		case f.cfg.MaxInflight > 0 && f.total >= f.cfg.MaxInflight:
			// Saturated: shed the clients that send at least the mean
			// rate of those with requests in flight.
			mean := f.rate.perSecond(now) / float64(max(f.active, 1))
			if a == nil || a.rate.perSecond(now) >= mean {
				reason = "inflight_global"
			}
		case a != nil && f.cfg.ContendedRatio > 0 && now < f.contendedUntil && f.overShare(a, now):
			// Contended: an address past its share pays for its own
			// traffic instead of the others.
			reason = "rate_addr"
		}
		if reason != "" {
			f.mu.Unlock()
			f.shed(w, r, req, reason)
			return
		}
		f.total++
		f.admitted.add(now)
		if f.cfg.MaxInflight > 0 && 2*f.total >= f.cfg.MaxInflight {
			f.contendedUntil = now + int64(f.cfg.ContendedFor)
		}
		if a != nil {
			if a.inflight == 0 {
				f.active++
			}
			a.inflight++
			a.admitted.add(now)
		} else {
			f.untracked.Inc()
		}
		f.mu.Unlock()
		defer func() {
			f.mu.Lock()
			f.total--
			if a != nil {
				a.inflight--
				if a.inflight == 0 {
					f.active--
				}
			}
			f.mu.Unlock()
		}()
		next.ServeRouted(w, r, req)
	})
}

// overShare reports whether a's admitted rate is past ContendedRatio
// times the rate the other addresses send at, while they send at least
// MinRatePerAddr together (an address alone, or nearly, is not anyone's
// flooder) and a's is past MinRatePerAddr. Called with f.mu held.
func (f *Flood) overShare(a *floodAddr, now int64) bool {
	mine := a.admitted.perSecond(now)
	if mine < f.cfg.MinRatePerAddr {
		return false
	}
	others := f.rate.perSecond(now) - a.rate.perSecond(now)
	return others >= f.cfg.MinRatePerAddr && mine >= f.cfg.ContendedRatio*others
}

// shedDelay is how long a shed request's answer is held, on average: a
// flooding client that sends its next request as soon as it has an answer
// then costs the edge a parse and a page per delay and connection, not as
// many as it can send. Each hold is drawn from half to one and a half
// times it: equal holds release a flooder's connections together, and the
// waves of requests they then send at once are what others wait behind.
// At most maxHeld shed answers are held at once (each holds a goroutine
// and its connection); past it, they are answered at once.
const (
	shedDelay = 500 * time.Millisecond
	maxHeld   = 4096
)

func (f *Flood) shed(w http.ResponseWriter, r *http.Request, req *layer.Request, reason string) {
	if f.held.Add(1) <= maxHeld {
		t := time.NewTimer(shedDelay/2 + rand.N(shedDelay))
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	f.held.Add(-1)
	w.Header().Set("Retry-After", "1")
	switch reason {
	case "inflight_addr":
		f.inflightAddr.Inc()
		f.quiet.Info("request shed: too many in flight from one address", "addr", req.ClientIP, "request_id", req.ID)
		layer.Refuse(w, r, req, http.StatusTooManyRequests, "Too many requests",
			"Your address has too many requests in flight at this edge; try again in a moment.")
		return
	case "rate_addr":
		f.rateAddr.Inc()
		f.quiet.Info("request shed: the edge is contended and this address is served more than its share", "addr", req.ClientIP, "request_id", req.ID, "ratio", f.cfg.ContendedRatio)
		layer.Refuse(w, r, req, http.StatusTooManyRequests, "Too many requests",
			"This edge is busy and your address sends more than its share; try again in a moment.")
		return
	}
	f.inflightGlobal.Inc()
	f.quiet.Info("request shed: the edge is saturated", "addr", req.ClientIP, "request_id", req.ID)
	layer.Refuse(w, r, req, http.StatusServiceUnavailable, "Edge saturated",
		"This edge is saturated and is shedding the clients that send the most; try again in a moment.")
}

// sweep forgets the addresses with nothing open, nothing in flight and a
// full new-connection allowance, every few seconds; and every waitEvery
// it marks the edge contended if its goroutines wait for a CPU.
func (f *Flood) sweep() {
	defer close(f.stopped)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	var wait <-chan time.Time
	if f.cfg.ContendedWait > 0 && f.cfg.ContendedRatio > 0 {
		t := time.NewTicker(waitEvery)
		defer t.Stop()
		wait = t.C
		f.waits(waitQ) // the first read is the baseline
	}
	for {
		select {
		case <-f.stop:
			return
		case <-wait:
			f.checkWait()
			continue
		case <-tick.C:
		}
		now := time.Now()
		f.mu.Lock()
		for k, a := range f.addrs {
			if a.conns == 0 && a.inflight == 0 && (a.newConns == nil || a.newConns.TokensAt(now) >= float64(f.cfg.NewConnsBurst)) {
				delete(f.addrs, k)
			}
		}
		f.mu.Unlock()
	}
}

// checkWait marks the edge contended for ContendedFor if, since the last
// check, a tenth of its goroutines waited ContendedWait or longer for a
// CPU.
func (f *Flood) checkWait() {
	d, n := f.waits(waitQ)
	if n < waitMinEvents || d < f.cfg.ContendedWait {
		return
	}
	now := time.Now().UnixNano()
	f.mu.Lock()
	f.contendedUntil = max(f.contendedUntil, now+int64(f.cfg.ContendedFor))
	f.mu.Unlock()
}
