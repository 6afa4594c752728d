package publictls

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// etcdStorage is certmagic's Storage in etcd, so that every edge of a fleet
// serves the same certificates, and certmagic's locks are etcd locks: only
// one edge orders a name at a time, and a dead edge's lock goes with its
// lease.
//
// A value is stored as an 8-byte big-endian Unix time in nanoseconds (when
// it was written, for Stat) followed by the bytes certmagic gave.
type etcdStorage struct {
	cli    *clientv3.Client
	prefix string // ends in "/"
	locks  string // prefix of lock keys

	mu      sync.Mutex
	session *concurrency.Session
	held    map[string]*concurrency.Mutex
	// local holds a name's lock within this edge: an etcd mutex of one
	// session does not exclude itself, and two certmagic configurations
	// (on-demand and eager) share this storage.
	local map[string]chan struct{}
}

var _ certmagic.Storage = (*etcdStorage)(nil)

func newEtcdStorage(cli *clientv3.Client, prefix, locks string) *etcdStorage {
	return &etcdStorage{cli: cli, prefix: prefix, locks: locks, held: make(map[string]*concurrency.Mutex), local: make(map[string]chan struct{})}
}

func (s *etcdStorage) key(k string) string { return s.prefix + strings.Trim(k, "/") }

func (s *etcdStorage) Store(ctx context.Context, key string, value []byte) error {
	v := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(v, uint64(time.Now().UnixNano()))
	copy(v[8:], value)
	_, err := s.cli.Put(ctx, s.key(key), string(v))
	return err
}

func (s *etcdStorage) get(ctx context.Context, key string) ([]byte, error) {
	resp, err := s.cli.Get(ctx, s.key(key))
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, fs.ErrNotExist
	}
	v := resp.Kvs[0].Value
	if len(v) < 8 {
		return nil, fmt.Errorf("publictls: storage: value of %q is malformed", key)
	}
	return v, nil
}

func (s *etcdStorage) Load(ctx context.Context, key string) ([]byte, error) {
	v, err := s.get(ctx, key)
	if err != nil {
		return nil, err
	}
	return v[8:], nil
}

func (s *etcdStorage) Delete(ctx context.Context, key string) error {
	k := s.key(key)
	_, err := s.cli.Txn(ctx).Then(
		clientv3.OpDelete(k),
		clientv3.OpDelete(k+"/", clientv3.WithPrefix()),
	).Commit()
	return err
}

func (s *etcdStorage) Exists(ctx context.Context, key string) bool {
	k := s.key(key)
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(k, clientv3.WithCountOnly()),
		clientv3.OpGet(k+"/", clientv3.WithPrefix(), clientv3.WithCountOnly()),
	).Commit()
	if err != nil {
		return false
	}
	for _, r := range resp.Responses {
		if r.GetResponseRange().Count > 0 {
			return true
		}
	}
	return false
}

func (s *etcdStorage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	base := s.key(dir)
	resp, err := s.cli.Get(ctx, base+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, fs.ErrNotExist
	}
	seen := make(map[string]bool)
	var keys []string
	for _, kv := range resp.Kvs {
		rel := strings.TrimPrefix(string(kv.Key), base+"/")
		parts := strings.Split(rel, "/")
		if recursive {
			// Every directory on the way, and the file.
			for i := range parts {
				k := path.Join(append([]string{strings.Trim(dir, "/")}, parts[:i+1]...)...)
				if !seen[k] {
					seen[k] = true
					keys = append(keys, k)
				}
			}
			continue
		}
		k := path.Join(strings.Trim(dir, "/"), parts[0])
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	return keys, nil
}

func (s *etcdStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	v, err := s.get(ctx, key)
	if errors.Is(err, fs.ErrNotExist) && s.Exists(ctx, key) {
		return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
	}
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	return certmagic.KeyInfo{
		Key:        key,
		Modified:   time.Unix(0, int64(binary.BigEndian.Uint64(v))),
		Size:       int64(len(v) - 8),
		IsTerminal: true,
	}, nil
}

// Lock takes the etcd lock of name, held by this edge's session: if the
// edge dies, its lease ends and the lock with it.
func (s *etcdStorage) Lock(ctx context.Context, name string) error {
	s.mu.Lock()
	local := s.local[name]
	if local == nil {
		local = make(chan struct{}, 1)
		s.local[name] = local
	}
	s.mu.Unlock()
	select {
	case local <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("publictls: lock %q: %w", name, ctx.Err())
	}
	sess, err := s.sessionFor(ctx)
	if err != nil {
		<-local
		return err
	}
	m := concurrency.NewMutex(sess, s.locks+name)
	if err := m.Lock(ctx); err != nil {
		<-local
		return fmt.Errorf("publictls: lock %q: %w", name, err)
	}
	s.mu.Lock()
	s.held[name] = m
	s.mu.Unlock()
	return nil
}

func (s *etcdStorage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	m := s.held[name]
	delete(s.held, name)
	local := s.local[name]
	s.mu.Unlock()
	if m == nil {
		return fmt.Errorf("publictls: unlock %q: not held", name)
	}
	err := m.Unlock(ctx)
	<-local
	return err
}

func (s *etcdStorage) sessionFor(ctx context.Context) (*concurrency.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.session != nil {
		select {
		case <-s.session.Done():
			s.session = nil // its lease expired (etcd was out of reach)
		default:
			return s.session, nil
		}
	}
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(15), concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return nil, fmt.Errorf("publictls: etcd session: %w", err)
	}
	s.session = sess
	return sess, nil
}

// close ends the session, releasing any lock still held.
func (s *etcdStorage) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.session == nil {
		return nil
	}
	err := s.session.Close()
	s.session = nil
	return err
}

// String names the storage in certmagic's logs.
func (s *etcdStorage) String() string { return "etcd:" + s.prefix }
