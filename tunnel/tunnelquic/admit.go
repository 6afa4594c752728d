package tunnelquic

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// Bounding handshakes (Config.Admit).
//
// quic-go calls Transport.ConnContext at a new connection's first
// Initial, before it creates any connection state or does TLS work; an
// error there makes it answer CONNECTION_REFUSED under the Initial keys
// (server.go: refuseNewConn), which costs the edge one small packet. The
// context it passes ends when the connection ends, handshake failures and
// timeouts included, so a place taken there is given back then; one whose
// handshake completed is given back when Accept returns it (a connection
// waiting in quic-go's accept queue still holds its place).

// errRefused is what ConnContext returns past the bound; quic-go logs it
// at debug level only, the peer sees CONNECTION_REFUSED.
var errRefused = errors.New("quic: too many handshakes in progress")

// placeKey carries a connection's *place in its context.
type placeKey struct{}

// place is one connection's hold on an Admit place.
type place struct {
	once    sync.Once
	release func()
	timer   *time.Timer
	stop    func() bool // stops the context.AfterFunc
}

func (p *place) end() { p.once.Do(p.release) }

// accepted gives the place back when Accept returns the connection.
func (p *place) accepted() {
	p.timer.Stop()
	p.stop()
	p.end()
}

// admitter is the transport's ConnContext for admit: a place per
// connection in its handshake, held at most maxHold.
func admitter(admit func(net.Addr, bool) (func(), bool), maxHold time.Duration) func(context.Context, *quic.ClientInfo) (context.Context, error) {
	return func(ctx context.Context, ci *quic.ClientInfo) (context.Context, error) {
		release, ok := admit(ci.RemoteAddr, ci.AddrVerified)
		if !ok {
			return ctx, errRefused
		}
		p := &place{release: release}
		p.timer = time.AfterFunc(maxHold, p.end)
		p.stop = context.AfterFunc(ctx, p.end)
		return context.WithValue(ctx, placeKey{}, p), nil
	}
}

// refusedNow reports whether a dial's error is the edge's CONNECTION_REFUSED.
func refusedNow(err error) bool {
	var te *quic.TransportError
	return errors.As(err, &te) && te.Remote && te.ErrorCode == quic.ConnectionRefused
}
