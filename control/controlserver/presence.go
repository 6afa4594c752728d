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
//
// Writes are group-committed: Add, Update, Remove, Put and Delete queue
// their write and one writer commits everything queued in a transaction
// (up to presenceBatch keys each), in order. A thousand connectors
// registering at once cost a few dozen etcd round trips (and fsyncs), not
// a thousand in a row.
//
// No record outlives its connection. A write that failed may still have
// been applied (etcd's answer was lost, the deadline passed in flight), so
// the key of a failed put or delete is kept as an orphan and deleted again
// until a delete succeeds; an Update of a removed connection is dropped
// rather than putting its record back; and RemoveLeftovers clears what a
// previous run of the same edge left (a kill -9 leaves its records until
// its lease expires, and a restarted etcd renews that lease).
type Presence struct {
	cli *clientv3.Client
	ttl int64 // seconds
	log *slog.Logger

	mu      sync.Mutex // held across etcd writes, so re-grants and batches do not interleave
	lease   clientv3.LeaseID
	heard   atomic.Int64        // unix nanoseconds of etcd's last answer on the lease (grant or keepalive)
	entries map[string]string   // key → JSON connection
	orphans map[string]struct{} // keys to delete again (a failed write may have landed)

	qmu     sync.Mutex
	queue   []*presenceOp
	qclosed bool          // the writer has stopped: nothing more is queued
	kick    chan struct{} // one slot: the queue has work

	cancel    context.CancelFunc
	done      chan struct{} // run (the keepalive) has returned
	wdone     chan struct{} // the writer has returned
	closeOnce sync.Once
	closeErr  error
}

// presenceBatch is the most keys one transaction writes (etcd refuses more
// than 128 operations in a transaction by default).
const presenceBatch = 100

// presenceWriteTimeout bounds one transaction of the writer.
const presenceWriteTimeout = 5 * time.Second

// orphanRetry is how often keys whose write failed are deleted again.
const orphanRetry = 2 * time.Second

// presenceOp is one queued write.
type presenceOp struct {
	key, val string
	del      bool       // delete the key; else put val
	ifHeld   bool       // put only if the key is held (Update)
	done     chan error // the result, once
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
		orphans: make(map[string]struct{}),
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		wdone:   make(chan struct{}),
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
	go p.write(kctx)
	return p, nil
}

// grant takes a new lease, starts keeping it alive, moves every entry onto it
// and revokes the previous one. p.mu is held.
func (p *Presence) grant(ctx context.Context) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	// Each try is bounded (etcd out of reach would hold p.mu, and every
	// write with it, for as long); the keepalive runs under ctx.
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
	ops := make([]clientv3.Op, 0, presenceBatch)
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

// enqueue queues o for the writer and waits for its result. It waits even
// if ctx ends first, as the write may still land (the writer's own
// deadline bounds the wait), so that a caller never takes a record for
// absent that etcd has.
func (p *Presence) enqueue(o *presenceOp) error {
	o.done = make(chan error, 1)
	p.qmu.Lock()
	if p.qclosed {
		p.qmu.Unlock()
		if o.del {
			return nil // the lease is gone, and the entry with it
		}
		return errors.New("control: presence: closed")
	}
	p.queue = append(p.queue, o)
	p.qmu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return <-o.done
}

// write is the writer: it commits what is queued, in batches, until ctx
// ends; then it fails what is left.
func (p *Presence) write(ctx context.Context) {
	defer close(p.wdone)
	retry := time.NewTicker(orphanRetry)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			p.qmu.Lock()
			p.qclosed = true
			left := p.queue
			p.queue = nil
			p.qmu.Unlock()
			for _, o := range left {
				if o.del {
					o.done <- nil // Close revokes the lease
				} else {
					o.done <- errors.New("control: presence: closed")
				}
			}
			return
		case <-p.kick:
		case <-retry.C:
		}
		p.qmu.Lock()
		ops := p.queue
		p.queue = nil
		p.qmu.Unlock()
		p.mu.Lock()
		for len(ops) > 0 || len(p.orphans) > 0 {
			ops = p.commit(ctx, ops)
			if len(ops) == 0 {
				break // orphans go with the next batch, or at the next retry
			}
		}
		p.mu.Unlock()
	}
}

// commit writes a prefix of ops (at most presenceBatch keys, no key twice)
// and the orphans that fit, in one transaction, answers those ops, and
// returns the rest. p.mu is held.
func (p *Presence) commit(ctx context.Context, ops []*presenceOp) []*presenceOp {
	keys := make(map[string]bool, min(len(ops), presenceBatch))
	var txn []clientv3.Op
	var batch []*presenceOp
	n := 0
	for ; n < len(ops) && len(txn) < presenceBatch; n++ {
		o := ops[n]
		if keys[o.key] {
			break // a transaction may name a key once
		}
		switch {
		case o.del:
			txn = append(txn, clientv3.OpDelete(o.key))
		case o.ifHeld && p.entries[o.key] == "":
			o.done <- nil // removed meanwhile: its record stays gone
			continue
		default:
			txn = append(txn, clientv3.OpPut(o.key, o.val, clientv3.WithLease(p.lease)))
		}
		keys[o.key] = true
		batch = append(batch, o)
	}
	var orphans []string
	for key := range p.orphans {
		if len(txn) >= presenceBatch {
			break
		}
		if _, held := p.entries[key]; !held && !keys[key] {
			txn = append(txn, clientv3.OpDelete(key))
			orphans = append(orphans, key)
		}
	}
	if len(txn) == 0 {
		return ops[n:]
	}
	wctx, cancel := context.WithTimeout(ctx, presenceWriteTimeout)
	_, err := p.cli.Txn(wctx).Then(txn...).Commit()
	cancel()
	if err == nil {
		for _, key := range orphans {
			delete(p.orphans, key)
		}
	} else if len(orphans) > 0 {
		p.log.Warn("deleting connection records whose write failed", "keys", len(orphans), "err", err)
	}
	for _, o := range batch {
		if o.del {
			delete(p.entries, o.key)
		}
		switch {
		case err != nil:
			// Put or delete, it may have landed: delete the key until
			// a delete succeeds.
			delete(p.entries, o.key)
			p.orphans[o.key] = struct{}{}
			if o.del {
				o.done <- fmt.Errorf("%w (deleting it again later)", err)
			} else {
				o.done <- err
			}
		case o.del:
			delete(p.orphans, o.key)
			o.done <- nil
		default:
			p.entries[o.key] = o.val
			delete(p.orphans, o.key)
			o.done <- nil
		}
	}
	return ops[n:]
}

// Add publishes a connection (c.TunnelID and c.ID name its key). If it
// fails, no record of the connection is left behind.
func (p *Presence) Add(ctx context.Context, c control.Connection) error {
	return p.putConn(c, false)
}

// Update publishes a connection's record again with new details, if the
// connection is still published: after Remove it does nothing, so a late
// update never brings a removed record back.
func (p *Presence) Update(ctx context.Context, c control.Connection) error {
	return p.putConn(c, true)
}

func (p *Presence) putConn(c control.Connection, ifHeld bool) error {
	key, err := presenceKey(c.TunnelID, c.ID)
	if err != nil {
		return err
	}
	val, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("control: presence: %w", err)
	}
	if err := p.enqueue(&presenceOp{key: key, val: string(val), ifHeld: ifHeld}); err != nil {
		return fmt.Errorf("control: presence: record connection %s: %w", c.ID, err)
	}
	return nil
}

// Remove withdraws a connection. Its deletion reaches State watchers as a
// ConnectionRemoved event, like any other. If the delete fails, it is
// tried again until it succeeds (or the lease ends).
func (p *Presence) Remove(ctx context.Context, tunnelID, connID string) error {
	key, err := presenceKey(tunnelID, connID)
	if err != nil {
		return err
	}
	if err := p.enqueue(&presenceOp{key: key, del: true}); err != nil {
		return fmt.Errorf("control: presence: remove connection %s: %w", connID, err)
	}
	return nil
}

// RemoveLeftovers deletes the connection records of edge node that are
// not under this presence's lease: what a previous run of the same edge
// left. An edge calls it once at start, before it registers anyone. It
// returns how many it deleted.
func (p *Presence) RemoveLeftovers(ctx context.Context, node string) (int, error) {
	p.mu.Lock()
	lease := p.lease
	p.mu.Unlock()
	resp, err := p.cli.Get(ctx, store.ConnectionsPrefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("control: presence: listing connection records: %w", err)
	}
	var cmps []clientv3.Cmp
	var dels []clientv3.Op
	deleted := 0
	flush := func() error {
		if len(dels) == 0 {
			return nil
		}
		// Each key only if its lease is still the one read: a record a
		// live edge of the same name put meanwhile stays.
		_, err := p.cli.Txn(ctx).If(cmps...).Then(dels...).Commit()
		if err == nil {
			deleted += len(dels) // none if a comparison failed; they are ours no more
		}
		cmps, dels = cmps[:0], dels[:0]
		return err
	}
	for _, kv := range resp.Kvs {
		var c control.Connection
		if clientv3.LeaseID(kv.Lease) == lease || json.Unmarshal(kv.Value, &c) != nil || c.EdgeNode != node {
			continue
		}
		key := string(kv.Key)
		cmps = append(cmps, clientv3.Compare(clientv3.LeaseValue(key), "=", kv.Lease))
		dels = append(dels, clientv3.OpDelete(key))
		if len(dels) == presenceBatch/2 { // a comparison and a delete each
			if err := flush(); err != nil {
				return deleted, fmt.Errorf("control: presence: deleting left-over records: %w", err)
			}
		}
	}
	if err := flush(); err != nil {
		return deleted, fmt.Errorf("control: presence: deleting left-over records: %w", err)
	}
	return deleted, nil
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
		<-p.wdone
		p.mu.Lock()
		lease := p.lease
		p.entries = map[string]string{}
		orphans := p.orphans
		p.mu.Unlock()
		if err := p.revoke(lease); err != nil {
			p.closeErr = fmt.Errorf("control: presence: revoke lease: %w", err)
		}
		if len(orphans) > 0 {
			// Keys under the lease went with it; others (a lease
			// revoked by a re-grant) are deleted here, best effort.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for key := range orphans {
				p.cli.Delete(ctx, key)
			}
		}
	})
	return p.closeErr
}
