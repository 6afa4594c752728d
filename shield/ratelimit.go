package shield

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge/layer"
	"github.com/adit-dev/adit/internal/logs"
	"github.com/adit-dev/adit/internal/ratelog"
	"github.com/adit-dev/adit/internal/store"
)

// RateLimitConfig tunes the rate limits of one edge.
type RateLimitConfig struct {
	// MaxKeys bounds the clients tracked at once, over every limit. A new
	// client past it is not counted (and let through) until old ones
	// expire; adit_edge_ratelimit_decisions_total{reason="untracked"}
	// counts those requests. If zero, 100,000.
	MaxKeys int
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
}

// RateLimits is the layer of the rate limits (control.RateLimit): per
// edge, a sliding window per client and limit (the previous fixed
// window's count, weighted by how much of it the sliding window still
// covers, plus the current one's).
type RateLimits struct {
	log     *slog.Logger
	quiet   *slog.Logger // rate-limited, for what clients trigger at will
	now     func() time.Time
	maxKeys int64
	keys    atomic.Int64 // tracked keys, over every limiter
	idx     atomic.Pointer[rlIndex]
	mu      sync.Mutex // serializes apply
	byID    map[string]*limiter
	done    <-chan struct{}
	sweepd  chan struct{}
	cancel  func()

	blocked, logged, untracked prometheus.Counter
}

var _ layer.Layer = (*RateLimits)(nil)

// NewRateLimits loads the rate limits and watches them.
func NewRateLimits(deps layer.Deps, cfg RateLimitConfig) (*RateLimits, error) {
	d, err := newDecisions(deps.Metrics, "ratelimit", "Requests over a rate limit, by reason (blocked, logged), and those not counted because the edge tracks MaxKeys clients already (untracked).")
	if err != nil {
		return nil, err
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := logs.Component(deps.Logger, "shield").With("layer", "ratelimit")
	l := &RateLimits{log: log, quiet: ratelog.NewLimiter(10 * time.Second).Logger(log), now: cfg.Now,
		maxKeys: int64(cfg.MaxKeys), byID: map[string]*limiter{}, sweepd: make(chan struct{}),
		blocked: d.counter("blocked"), logged: d.counter("logged"), untracked: d.counter("untracked")}
	ctx, cancel := contextFrom(deps.Ctx)
	l.cancel = cancel
	l.done, err = watchPrefix(ctx, deps.Etcd, store.RateLimitsPrefix, log, l.apply)
	if err != nil {
		cancel()
		return nil, err
	}
	go l.sweep(ctx)
	return l, nil
}

// Name implements layer.Layer.
func (l *RateLimits) Name() string { return "ratelimit" }

// Close implements layer.Layer.
func (l *RateLimits) Close() error {
	l.cancel()
	<-l.done
	<-l.sweepd
	return nil
}

// Wrap implements layer.Layer: the limits by address and by header.
func (l *RateLimits) Wrap(next layer.Handler) layer.Handler {
	return l.wrap(next, false)
}

// AfterAccess is the layer of the limits by Access email: it goes after
// the Access layer, which tells who the visitor is.
func (l *RateLimits) AfterAccess() layer.Layer { return afterAccess{l} }

type afterAccess struct{ l *RateLimits }

func (a afterAccess) Name() string                          { return "ratelimit-access" }
func (a afterAccess) Wrap(next layer.Handler) layer.Handler { return a.l.wrap(next, true) }
func (a afterAccess) Close() error                          { return nil }

func (l *RateLimits) wrap(next layer.Handler, email bool) layer.Handler {
	return layer.HandlerFunc(func(w http.ResponseWriter, r *http.Request, req *layer.Request) {
		idx := l.idx.Load()
		if idx == nil || idx.empty(email) {
			next.ServeRouted(w, r, req)
			return
		}
		for _, lim := range idx.forHost(req.Host, email) {
			retry, over := l.hit(lim, r, req)
			if !over {
				continue
			}
			if lim.rule.Action == control.LimitLog {
				l.logged.Inc()
				l.quiet.Info("over a rate limit (logged only)", "limit", lim.rule.ID, "host", req.Host, "client", req.ClientAddr, "request_id", req.ID)
				continue
			}
			l.blocked.Inc()
			l.quiet.Info("over a rate limit", "limit", lim.rule.ID, "host", req.Host, "client", req.ClientAddr, "request_id", req.ID)
			secs := int64((retry + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
			layer.Refuse(w, r, req, http.StatusTooManyRequests, "Too many requests",
				"You sent more requests to "+req.Host+" than its rate limit allows; try again in "+strconv.FormatInt(max(secs, 1), 10)+"s.")
			return
		}
		next.ServeRouted(w, r, req)
	})
}

// hit counts r against lim and reports whether its client is over the
// limit, and for how long it stays blocked.
func (l *RateLimits) hit(lim *limiter, r *http.Request, req *layer.Request) (time.Duration, bool) {
	if lim.rule.Method != "" && r.Method != lim.rule.Method {
		return 0, false
	}
	if lim.path != nil && !lim.path.MatchString(r.URL.Path) {
		return 0, false
	}
	var buf [64]byte
	var key []byte
	switch {
	case lim.rule.By == control.ByIP:
		key = req.ClientIP.AppendTo(buf[:0])
	case lim.rule.By == control.ByAccessEmail:
		if req.Identity == nil || req.Identity.Email == "" {
			return 0, false
		}
		key = append(buf[:0], req.Identity.Email...)
	default:
		v := r.Header.Get(lim.header)
		if v == "" {
			return 0, false
		}
		if len(v) > 64 {
			sum := sha256.Sum256([]byte(v))
			key = hex.AppendEncode(buf[:0], sum[:16])
		} else {
			key = append(buf[:0], v...)
		}
	}
	return lim.hit(l, key, l.now())
}

// limiter is one rate limit's counters.
type limiter struct {
	rule   control.RateLimit
	path   *regexp.Regexp
	header string // for ByHeader
	period int64  // ns
	mu     sync.Mutex
	keys   map[string]*counter
}

// counter is one client's counts: of the fixed window it last sent in
// (win, numbered since the epoch) and of the window before it.
type counter struct {
	win          int64
	cur, prev    int64
	blockedUntil int64 // ns since the epoch
}

func (lim *limiter) hit(l *RateLimits, key []byte, now time.Time) (time.Duration, bool) {
	t := now.UnixNano()
	win := t / lim.period
	lim.mu.Lock()
	defer lim.mu.Unlock()
	c := lim.keys[string(key)]
	if c == nil {
		if l.keys.Add(1) > l.maxKeys {
			l.keys.Add(-1)
			l.untracked.Inc()
			l.quiet.Warn("rate limit keys full; a client is not counted", "limit", lim.rule.ID, "max_keys", l.maxKeys)
			return 0, false
		}
		c = &counter{win: win}
		lim.keys[string(key)] = c
	}
	if c.blockedUntil > t {
		return time.Duration(c.blockedUntil - t), true
	}
	if c.win != win {
		if c.win == win-1 {
			c.prev = c.cur
		} else {
			c.prev = 0
		}
		c.cur, c.win = 0, win
	}
	elapsed := t - win*lim.period
	est := float64(c.prev)*float64(lim.period-elapsed)/float64(lim.period) + float64(c.cur)
	if est >= float64(lim.rule.Requests) {
		d := lim.rule.Timeout.Duration()
		if d == 0 {
			d = time.Duration(lim.period - elapsed) // the previous window's weight is gone by then
		}
		c.blockedUntil = t + int64(d)
		return d, true
	}
	c.cur++
	return 0, false
}

// sweep drops the counters of clients that have been quiet for two
// windows and are not blocked, every few seconds.
func (l *RateLimits) sweep(ctx interface{ Done() <-chan struct{} }) {
	defer close(l.sweepd)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		l.mu.Lock()
		lims := make([]*limiter, 0, len(l.byID))
		for _, lim := range l.byID {
			lims = append(lims, lim)
		}
		l.mu.Unlock()
		t := l.now().UnixNano()
		for _, lim := range lims {
			lim.mu.Lock()
			win := t / lim.period
			for k, c := range lim.keys {
				if c.win < win-1 && c.blockedUntil <= t {
					delete(lim.keys, k)
					l.keys.Add(-1)
				}
			}
			lim.mu.Unlock()
		}
	}
}

func (l *RateLimits) apply(recs map[string][]byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := map[string]bool{}
	idx := &rlIndex{hosts: map[string][]*limiter{}, wild: map[string][]*limiter{}}
	for k, v := range recs {
		var rule control.RateLimit
		if err := json.Unmarshal(v, &rule); err != nil || rule.Validate() != nil {
			l.log.Warn("skipping an unreadable rate limit", "key", k)
			continue
		}
		lim := l.byID[rule.ID]
		if lim == nil || lim.rule != rule {
			if lim != nil {
				l.drop(lim)
			}
			lim = &limiter{rule: rule, period: int64(rule.Period.Duration()), keys: map[string]*counter{}}
			if rule.Path != "" {
				lim.path = regexp.MustCompile(rule.Path) // Validate compiled it
			}
			if strings.HasPrefix(rule.By, control.ByHeader) {
				lim.header = http.CanonicalHeaderKey(rule.By[len(control.ByHeader):])
			}
			l.byID[rule.ID] = lim
		}
		seen[rule.ID] = true
		idx.add(lim)
	}
	for id, lim := range l.byID {
		if !seen[id] {
			l.drop(lim)
			delete(l.byID, id)
		}
	}
	l.idx.Store(idx)
}

// drop forgets a limiter's keys.
func (l *RateLimits) drop(lim *limiter) {
	lim.mu.Lock()
	l.keys.Add(-int64(len(lim.keys)))
	lim.keys = map[string]*counter{}
	lim.mu.Unlock()
}

// rlIndex is the rate limits by hostname, immutable once built. The
// limits by Access email are apart (afterAccess checks them).
type rlIndex struct {
	hosts, wild           map[string][]*limiter
	all                   []*limiter
	emailHosts, emailWild map[string][]*limiter
	emailAll              []*limiter
	n, nEmail             int
}

func (x *rlIndex) empty(email bool) bool {
	if email {
		return x.nEmail == 0
	}
	return x.n == 0
}

func (x *rlIndex) add(lim *limiter) {
	hosts, wild, all := &x.hosts, &x.wild, &x.all
	if lim.rule.By == control.ByAccessEmail {
		if x.emailHosts == nil {
			x.emailHosts, x.emailWild = map[string][]*limiter{}, map[string][]*limiter{}
		}
		hosts, wild, all = &x.emailHosts, &x.emailWild, &x.emailAll
		x.nEmail++
	} else {
		x.n++
	}
	switch h := lim.rule.Hostname; {
	case h == control.AllHosts:
		*all = append(*all, lim)
	case strings.HasPrefix(h, "*."):
		(*wild)[h[2:]] = append((*wild)[h[2:]], lim)
	default:
		(*hosts)[h] = append((*hosts)[h], lim)
	}
}

// forHost returns the limits of host, in order: its own, its wildcard's,
// AllHosts'. It allocates only when more than one of those has limits.
func (x *rlIndex) forHost(host string, email bool) []*limiter {
	hosts, wild, all := x.hosts, x.wild, x.all
	if email {
		hosts, wild, all = x.emailHosts, x.emailWild, x.emailAll
	}
	own := hosts[host]
	var w []*limiter
	if len(wild) > 0 {
		if i := strings.IndexByte(host, '.'); i >= 0 {
			w = wild[host[i+1:]]
		}
	}
	switch {
	case w == nil && all == nil:
		return own
	case own == nil && all == nil:
		return w
	case own == nil && w == nil:
		return all
	}
	out := make([]*limiter, 0, len(own)+len(w)+len(all))
	return append(append(append(out, own...), w...), all...)
}
