package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/adit-dev/adit/internal/logs"
)

// Config says which etcd to use.
type Config struct {
	// DataDir holds the embedded etcd's data (in DataDir/etcd). Required when
	// Endpoints is empty; ignored otherwise.
	DataDir string

	// Endpoints of an external etcd cluster ("https://10.0.0.1:2379", ...).
	// If empty, an etcd server is embedded in this process.
	Endpoints []string

	// TLS, if set, is the base TLS config for https Endpoints; Remote's
	// files are added to it. Ignored for the embedded server.
	TLS *tls.Config

	// Remote secures external Endpoints (remote.go): CA, client
	// certificate, etcd user and password, and whether plaintext http to
	// another machine is allowed. Ignored for the embedded server.
	Remote Remote

	// Logger receives etcd's errors (nothing below error level). If nil, logs are discarded.
	Logger *slog.Logger

	// DialTimeout bounds connecting to etcd and the first request that proves
	// it is reachable. If zero, 5s.
	DialTimeout time.Duration

	// Member makes the embedded server one member of a cluster of edges
	// (cluster.go). The zero value is a lone member. Ignored with
	// Endpoints.
	Member Member
}

// Store is an open connection to etcd, and the embedded server if there is one.
type Store struct {
	cli       *clientv3.Client
	etcd      *embed.Etcd          // nil with external endpoints
	lock      *fileutil.LockedFile // held on DataDir/etcd while the embedded server runs
	endpoints []string

	closeOnce sync.Once
	closing   atomic.Bool // set by Close: etcd's shutdown noise is not an error
	closeErr  error

	// cluster.go: with Member.PeerListener
	peerLn       net.Listener
	peerSrv      *http.Server
	stopPromoter context.CancelFunc
	promoterDone chan struct{}
}

// maxUnixSocketPath is the longest socket path we trust every platform to
// accept (sun_path is 104 bytes on the BSDs, 108 on Linux).
const maxUnixSocketPath = 100

// Open starts the embedded etcd server (no cfg.Endpoints) or connects to an
// external cluster, and returns once etcd has answered a request.
// Canceling ctx aborts Open; it does not affect the returned Store.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	logger := logs.Component(cfg.Logger, "etcd")
	timeout := cfg.DialTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	s := &Store{endpoints: cfg.Endpoints}
	zl := newZapLogger(logger, &s.closing)
	var (
		tlsConf            *tls.Config
		username, password string
	)
	if len(cfg.Endpoints) == 0 {
		if err := s.startEmbedded(ctx, cfg.DataDir, cfg.Member, logger); err != nil {
			s.Close()
			return nil, err
		}
		if s.peerSrv != nil {
			if err := s.awaitVoter(ctx, cfg.Member.JoinTimeout); err != nil {
				s.Close()
				return nil, err
			}
		}
	} else {
		if cfg.Member.PeerListener != nil {
			cfg.Member.PeerListener.Close()
		}
		var err error
		if tlsConf, err = cfg.Remote.clientTLS(cfg.Endpoints, cfg.TLS); err != nil {
			return nil, err
		}
		username, password = cfg.Remote.Username, cfg.Remote.Password
	}

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            s.endpoints,
		DialTimeout:          timeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		TLS:                  tlsConf,
		Username:             username,
		Password:             password,
		Logger:               zl,
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("store: etcd at %s: %w", strings.Join(s.endpoints, ","), err)
	}
	s.cli = cli

	// clientv3.New does not wait for a connection; one request proves etcd is
	// there and has a leader.
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := cli.Get(cctx, Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: etcd at %s unreachable: %w", strings.Join(s.endpoints, ","), err)
	}
	if s.peerSrv != nil {
		if err := s.updatePeerURL(cctx, cfg.Member.PeerURL); err != nil {
			s.Close()
			return nil, err
		}
		pctx, stop := context.WithCancel(context.Background())
		s.stopPromoter, s.promoterDone = stop, make(chan struct{})
		go s.promoteLearners(pctx, logger)
	}
	return s, nil
}

// startEmbedded starts an etcd server with its data in dataDir/etcd, reachable
// through a unix socket in that directory, and sets s.endpoints to it.
func (s *Store) startEmbedded(ctx context.Context, dataDir string, m Member, logger *slog.Logger) error {
	if dataDir == "" {
		if m.PeerListener != nil {
			m.PeerListener.Close()
		}
		return errors.New("store: no etcd endpoints and no data dir for the embedded etcd")
	}
	var peerConf *tls.Config
	if m.PeerListener != nil {
		s.peerLn = m.PeerListener // closed by Close from here on
		var err error
		if peerConf, err = peerTLS(m); err != nil {
			return err
		}
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return fmt.Errorf("store: data dir: %w", err)
	}
	dir := filepath.Join(abs, "etcd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("store: %w", err)
	}

	// The lock keeps a second process from starting on the same data, which
	// would also take over our socket before etcd's own WAL lock refused it.
	lock, err := fileutil.TryLockFile(filepath.Join(dir, "adit.lock"), os.O_WRONLY|os.O_CREATE, 0o600)
	if errors.Is(err, fileutil.ErrLocked) {
		return fmt.Errorf("store: data dir %s is in use by another process", abs)
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	s.lock = lock

	// A unix socket in a 0700 directory: only this user on this machine can
	// connect. If the path is too long for a socket, fall back to loopback TCP
	// on a port the OS picks.
	var client url.URL
	endpoint := ""
	if sock := filepath.Join(dir, "client.sock"); len(sock) <= maxUnixSocketPath {
		client = url.URL{Scheme: "unix", Path: sock}
		endpoint = "unix://" + sock
	} else {
		client = url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	}

	ec := embed.NewConfig()
	ec.Dir = dir
	ec.ListenClientUrls = []url.URL{client}
	ec.AdvertiseClientUrls = []url.URL{client}
	// etcd listens for no peer itself: a member of a cluster takes peer
	// traffic on Member.PeerListener, served by the store (cluster.go).
	ec.ListenPeerUrls = nil
	if err := configureMember(ec, dir, m); err != nil {
		return err
	}
	ec.EnableGRPCGateway = false
	ec.LogLevel = "error"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(logger, &s.closing))
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = "1h"

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return fmt.Errorf("store: start embedded etcd in %s: %w", dir, err)
	}
	s.etcd = e
	if peerConf != nil {
		s.servePeers(m, peerConf, logger) // before ready: a member's first election needs its peers
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return fmt.Errorf("store: embedded etcd in %s: %w", dir, err)
	case <-e.Server.StopNotify():
		return fmt.Errorf("store: embedded etcd in %s stopped while starting", dir)
	case <-ctx.Done():
		return fmt.Errorf("store: start embedded etcd in %s: %w", dir, ctx.Err())
	}
	if endpoint == "" {
		endpoint = "http://" + e.Clients[0].Addr().String()
	}
	s.endpoints = []string{endpoint}
	return nil
}

// Client is the etcd client; it stays valid until Close.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Endpoints are the etcd endpoints in use (the embedded server's socket, or Config.Endpoints).
func (s *Store) Endpoints() []string { return s.endpoints }

// Embedded reports whether the etcd server runs inside this process.
func (s *Store) Embedded() bool { return s.etcd != nil }

// Close closes the client and stops the embedded server, if any.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		var errs []error
		if s.stopPromoter != nil {
			s.stopPromoter()
			<-s.promoterDone
		}
		if s.cli != nil {
			if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
				errs = append(errs, err)
			}
		}
		if s.peerSrv != nil {
			s.peerSrv.Close()
		}
		if s.peerLn != nil {
			s.peerLn.Close()
		}
		if s.etcd != nil {
			s.etcd.Close()
		}
		if s.lock != nil {
			errs = append(errs, s.lock.Close())
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("store: close: %w", err)
		}
	})
	return s.closeErr
}
