package publictls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/control"
)

// manualRecord is a brought certificate as stored in etcd, under
// manualPrefix + hostname.
type manualRecord struct {
	CertPEM string    `json:"cert_pem"`
	KeyPEM  string    `json:"key_pem"`
	AddedAt time.Time `json:"added_at"`
}

// parseManual checks a brought certificate for hostname: a key that
// matches, a leaf that names hostname (a wildcard hostname exactly) and
// has not expired.
func parseManual(hostname string, certPEM, keyPEM []byte, now time.Time) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, control.Errorf(control.ErrInvalid, "certificate and key: %v", err)
	}
	leaf := c.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, control.Errorf(control.ErrInvalid, "certificate: %v", err)
		}
		c.Leaf = leaf
	}
	if strings.HasPrefix(hostname, "*.") {
		found := false
		for _, n := range leaf.DNSNames {
			found = found || strings.EqualFold(n, hostname)
		}
		if !found {
			return nil, control.Errorf(control.ErrInvalid, "certificate names %v, not %s", leaf.DNSNames, hostname)
		}
	} else if err := leaf.VerifyHostname(hostname); err != nil {
		return nil, control.Errorf(control.ErrInvalid, "certificate does not cover %s: it names %v", hostname, leaf.DNSNames)
	}
	if now.After(leaf.NotAfter) {
		return nil, control.Errorf(control.ErrInvalid, "certificate expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &c, nil
}

// manualCerts are the brought certificates, in memory, kept current by an
// etcd watch: by exact hostname and by the parent of a wildcard.
type manualCerts struct {
	cli *clientv3.Client
	log *slog.Logger
	rev int64

	mu    sync.RWMutex
	exact map[string]*tls.Certificate // "app.example.com"
	wild  map[string]*tls.Certificate // "example.com" for "*.example.com"
}

func loadManual(ctx context.Context, cli *clientv3.Client, log *slog.Logger) (*manualCerts, error) {
	mc := &manualCerts{cli: cli, log: log}
	if err := mc.load(ctx); err != nil {
		return nil, err
	}
	return mc, nil
}

func (mc *manualCerts) load(ctx context.Context) error {
	resp, err := mc.cli.Get(ctx, manualPrefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("publictls: loading brought certificates: %w", err)
	}
	exact, wild := make(map[string]*tls.Certificate), make(map[string]*tls.Certificate)
	for _, kv := range resp.Kvs {
		mc.apply(exact, wild, string(kv.Key), kv.Value)
	}
	mc.mu.Lock()
	mc.exact, mc.wild, mc.rev = exact, wild, resp.Header.Revision
	mc.mu.Unlock()
	return nil
}

// apply puts one record (or its deletion, for a nil value) into the maps.
func (mc *manualCerts) apply(exact, wild map[string]*tls.Certificate, key string, val []byte) {
	host := strings.TrimPrefix(key, manualPrefix)
	m, name := exact, host
	if base, ok := strings.CutPrefix(host, "*."); ok {
		m, name = wild, base
	}
	if val == nil {
		delete(m, name)
		return
	}
	var rec manualRecord
	if err := json.Unmarshal(val, &rec); err != nil {
		mc.log.Warn("skipping an unreadable certificate record", "host", host, "err", err)
		return
	}
	// Expiry is not checked here: an expired certificate still loads (and
	// `adit cert list` shows it) rather than vanish.
	c, err := parseManual(host, []byte(rec.CertPEM), []byte(rec.KeyPEM), time.Time{})
	if err != nil {
		mc.log.Warn("skipping a brought certificate", "host", host, "err", err)
		return
	}
	m[name] = c
}

// watch keeps the maps current until ctx ends; after a watch failure
// (a compaction, etcd out of reach) it loads everything again.
func (mc *manualCerts) watch(ctx context.Context) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		mc.mu.RLock()
		rev := mc.rev
		mc.mu.RUnlock()
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for wr := range mc.cli.Watch(wctx, manualPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if err := wr.Err(); err != nil {
				break
			}
			mc.mu.Lock()
			for _, ev := range wr.Events {
				var val []byte
				if ev.Type == clientv3.EventTypePut {
					val = ev.Kv.Value
				}
				mc.apply(mc.exact, mc.wild, string(ev.Kv.Key), val)
			}
			mc.rev = wr.Header.Revision
			mc.mu.Unlock()
			delay = 100 * time.Millisecond
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
		if err := mc.load(ctx); err != nil && ctx.Err() == nil {
			mc.log.Warn("brought certificates not reloaded; serving the last known ones", "err", err)
		}
	}
}

// get returns the brought certificate for name: its own, or its parent's
// wildcard.
func (mc *manualCerts) get(name string) *tls.Certificate {
	mc.mu.RLock()
	defer mc.mu.RUnlock()
	if c := mc.exact[name]; c != nil {
		return c
	}
	if _, parent, ok := strings.Cut(name, "."); ok {
		return mc.wild[parent]
	}
	return nil
}

func (mc *manualCerts) covers(name string) bool { return mc.get(name) != nil }
