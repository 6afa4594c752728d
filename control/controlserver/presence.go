package controlserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/logs"
	"github.com/adit-dev/adit/internal/store"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Presence publishes the connections an edge holds, all under one etcd lease
// that it keeps alive: if the edge dies, the lease expires and every entry
// vanishes with it. If the keepalive fails (the lease expired while etcd was
// out of reach), Presence grants a new lease and puts every current entry
// again. It is safe for concurrent use.
type Presence struct {
	cli *clientv3.Client
	ttl int64 // seconds
	log *slog.Logger

	mu      sync.Mutex // held across etcd calls, so re-grants and Add/Remove do not interleave
	lease   clientv3.LeaseID
	heard   atomic.Int64      // unix nanoseconds of etcd's last answer on the lease (grant or keepalive)
	entries map[string]string // key → JSON connection
	closed  bool

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// NewPresence grants a lease with the given TTL (if zero, 10s; rounded up to
// whole seconds) and keeps it alive until ctx is done or Close. A nil logger
// discards.
func NewPresence(ctx context.Context, cli *clientv3.Client, ttl time.Duration, logger *slog.Logger) (*Presence, error) {
	logger = logs.Component(logger, "presence")
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	p := &Presence{
		cli:     cli,
		ttl:     int64((ttl + time.Second - 1) / time.Second),
		log:     logger,
		entries: make(map[string]string),
		done:    make(chan struct{}),
	}
	kctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	p.mu.Lock()
	ch, err := p.grant(kctx)
	p.mu.Unlock()
	if err != nil {
		cancel()
		return nil, err
	}
	go p.run(kctx, ch)
	return p, nil
}

// grant takes a new lease, starts keeping it alive, moves every entry onto it
// and revokes the previous one. p.mu is held.
func (p *Presence) grant(ctx context.Context) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	// Each try is bounded (etcd out of reach would hold p.mu, and every
	// Add and Remove with it, for as long); the keepalive runs under ctx.
	kctx := ctx
	ctx, cancel := context.WithTimeout(ctx, max(p.TTL(), 5*time.Second))
	defer cancel()
	lease, err := p.cli.Grant(ctx, p.ttl)
	if err != nil {
		return nil, fmt.Errorf("control: presence: grant lease: %w", err)
	}
	ch, err := p.cli.KeepAlive(kctx, lease.ID)
	if err != nil {
		p.revoke(lease.ID)
		return nil, fmt.Errorf("control: presence: keep lease alive: %w", err)
	}
	// Re-put in transactions of a size etcd accepts (its default limit is 128 ops).
	ops := make([]clientv3.Op, 0, 64)
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := p.cli.Txn(ctx).Then(ops...).Commit()
		ops = ops[:0]
		return err
	}
	for key, val := range p.entries {
		ops = append(ops, clientv3.OpPut(key, val, clientv3.WithLease(lease.ID)))
		if len(ops) == cap(ops) {
			if err := flush(); err != nil {
				p.revoke(lease.ID)
				return nil, fmt.Errorf("control: presence: put connections again: %w", err)
			}
		}
	}
	if err := flush(); err != nil {
		p.revoke(lease.ID)
		return nil, fmt.Errorf("control: presence: put connections again: %w", err)
	}
	if old := p.lease; old != clientv3.NoLease {
		p.revoke(old) // no entry is attached to it any more
	}
	p.lease = lease.ID
	p.heard.Store(time.Now().UnixNano())
	return ch, nil
}

// revoke drops a lease, best effort.
func (p *Presence) revoke(id clientv3.LeaseID) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := p.cli.Revoke(ctx, id)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		err = nil // expired already
	}
	return err
}

// run drains keepalive answers; when the keepalive ends before ctx, it grants a new lease.
func (p *Presence) run(ctx context.Context, ch <-chan *clientv3.LeaseKeepAliveResponse) {
	defer close(p.done)
	for {
		for range ch {
			p.heard.Store(time.Now().UnixNano())
		}
		if ctx.Err() != nil {
			return
		}
		p.log.Warn("lease keepalive ended; taking a new lease")
		delay := 50 * time.Millisecond
		for {
			p.mu.Lock()
			var err error
			ch, err = p.grant(ctx)
			p.mu.Unlock()
			if err == nil {
				p.log.Info("connections published under a new lease")
				break
			}
			if !sleepCtx(ctx, delay) {
				return
			}
			delay = min(2*delay, 5*time.Second)
		}
	}
}

// Heard is when etcd last answered on the lease: granted it or kept it
// alive. The client sends a keepalive every third of the TTL, so an answer
// older than two of those means etcd is out of reach (or overloaded), and
// one older than the TTL that the lease, and every entry under it, has
// expired.
func (p *Presence) Heard() time.Time { return time.Unix(0, p.heard.Load()) }

// TTL is the lease's time to live.
func (p *Presence) TTL() time.Duration { return time.Duration(p.ttl) * time.Second }

// Add publishes a connection (c.TunnelID and c.ID name its key).
func (p *Presence) Add(ctx context.Context, c control.Connection) error {
	key, err := presenceKey(c.TunnelID, c.ID)
	if err != nil {
		return err
	}
	val, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("control: presence: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("control: presence: closed")
	}
	if _, err := p.cli.Put(ctx, key, string(val), clientv3.WithLease(p.lease)); err != nil {
		return fmt.Errorf("control: presence: add connection %s: %w", c.ID, err)
	}
	p.entries[key] = string(val)
	return nil
}

// Remove withdraws a connection. Its deletion reaches State watchers as a
// ConnectionRemoved event, like any other.
func (p *Presence) Remove(ctx context.Context, tunnelID, connID string) error {
	key, err := presenceKey(tunnelID, connID)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.entries, key)
	if p.closed {
		return nil // its lease is gone, and the entry with it
	}
	if _, err := p.cli.Delete(ctx, key); err != nil {
		return fmt.Errorf("control: presence: remove connection %s: %w", connID, err)
	}
	return nil
}

func presenceKey(tunnelID, connID string) (string, error) {
	if tunnelID == "" || connID == "" || strings.Contains(tunnelID, "/") || strings.Contains(connID, "/") {
		return "", control.Errorf(control.ErrInvalid, "presence: bad connection key %q/%q", tunnelID, connID)
	}
	return store.ConnectionKey(tunnelID, connID), nil
}

// Close stops the keepalive and revokes the lease, so every entry vanishes at once.
func (p *Presence) Close() error {
	p.closeOnce.Do(func() {
		p.cancel()
		<-p.done
		p.mu.Lock()
		p.closed = true
		lease := p.lease
		p.entries = map[string]string{}
		p.mu.Unlock()
		if err := p.revoke(lease); err != nil {
			p.closeErr = fmt.Errorf("control: presence: revoke lease: %w", err)
		}
	})
	return p.closeErr
}
