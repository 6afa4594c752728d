package edgedns

import (
	"net/netip"
	"sync"
	"time"
)

// limiter bounds the UDP answers sent to one client network (a /24 for
// IPv4, a /56 for IPv6), so the edge cannot be made to flood a victim
// whose address a query forged: each network has a token bucket; a query
// past it is dropped, or every slip-th one answered with an empty
// truncated reply (TC), which sends a real resolver to TCP, where no
// address can be forged. Its memory is bounded: at most maxKeys networks
// are tracked; past that, idle ones are forgotten, and newcomers share
// one bucket until room is made.
type limiter struct {
	rate, burst float64
	maxKeys     int
	slip        int
	now         func() time.Time

	mu        sync.Mutex
	buckets   map[netip.Prefix]*bucket
	overflow  bucket
	lastSweep time.Time
	dropped   int
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst, maxKeys, slip int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), maxKeys: maxKeys, slip: slip, now: time.Now,
		buckets: make(map[netip.Prefix]*bucket)}
}

// clientNet is the network a client address is limited as.
func clientNet(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 56
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p
}

// allow takes a token for a's network. If none is left, slip says whether
// to send an empty truncated reply instead of nothing.
func (l *limiter) allow(a netip.Addr) (ok, slip bool) {
	if l == nil {
		return true, false
	}
	key := clientNet(a)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.maxKeys {
			l.sweep(now)
		}
		if len(l.buckets) >= l.maxKeys {
			b = &l.overflow
		} else {
			b = &bucket{tokens: l.burst, last: now}
			l.buckets[key] = b
		}
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, false
	}
	l.dropped++
	return false, l.slip > 0 && l.dropped%l.slip == 0
}

// sweep forgets the networks whose buckets have refilled (a new bucket
// would be the same), at most once a second.
func (l *limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Second {
		return
	}
	l.lastSweep = now
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for k, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, k)
		}
	}
}
