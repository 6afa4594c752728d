package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/etcdhttp"
)

// Member makes the embedded etcd server one member of a cluster of edges,
// as k3s runs its embedded etcd: every member serves etcd's peer traffic
// (raft, and the member and lease requests members make of each other) on
// PeerListener with mutual TLS, certificates from the fleet's CA. The zero
// value is a cluster of one member named "adit" with no peer listener.
type Member struct {
	// Name is the member's name (the edge's node name): 1-63 of
	// [A-Za-z0-9._-]. If empty, "adit".
	Name string
	// PeerListener, if set, is where this member takes peer traffic (a
	// TCP listener the caller bound; the store wraps it in TLS and closes
	// it). If nil, the member has no peer listener and can have no peers.
	PeerListener net.Listener
	// PeerURL is the https URL other members reach PeerListener at. It is
	// put into the cluster's records at start if they name another one.
	// Required with PeerListener.
	PeerURL string
	// PeerCertFile and PeerKeyFile are this member's certificate for peer
	// traffic, both server and client (PEM, signed by the CA in CAFile,
	// naming PeerURL's host). CAFile is the fleet's CA, the only one a
	// peer's certificate may come from. Required with PeerListener.
	PeerCertFile, PeerKeyFile, CAFile string
	// InitialCluster joins an existing cluster ("name=https://host:port,
	// ..."; every member's peer URLs, this one's included, as a member
	// add returns them) when the data directory holds no member yet. The
	// new member starts as a learner; Open returns once a voting member
	// has promoted it (every member with a PeerListener promotes learners
	// that caught up). If empty, a new cluster of this member alone.
	InitialCluster string
	// JoinTimeout bounds waiting for the promotion. If zero, 2m.
	JoinTimeout time.Duration
}

// memberNameRE is what a member name may be: initial-cluster strings are
// "name=url,name=url".
var memberNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// CheckMemberName reports whether name can name an etcd member.
func CheckMemberName(name string) error {
	if !memberNameRE.MatchString(name) {
		return fmt.Errorf("store: member name %q: want 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// CheckPeerURL checks a peer URL: https://host:port, nothing else.
func CheckPeerURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Port() == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || len(raw) > 256 {
		return fmt.Errorf("store: peer URL %q: want https://host:port", raw)
	}
	if p := u.Port(); p == "0" || strings.TrimLeft(p, "0123456789") != "" || len(p) > 5 {
		return fmt.Errorf("store: peer URL %q: bad port", raw)
	}
	return nil
}

// HasMember reports whether dataDir holds an embedded etcd member's data
// (Member.InitialCluster is then ignored: the member restarts as it was).
func HasMember(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, "etcd", "member", "wal"))
	return err == nil
}

// clusterMarker, in DataDir/etcd, says the member has been part of a
// cluster of more than one: it then keeps etcd's default ticks, not the
// short ones that make a lone member ready in tens of milliseconds.
const clusterMarker = "clustered"

// MarkClustered records that the embedded member has peers (an edge
// joined it): from its next start it ticks at etcd's default pace,
// which survives a loaded network.
func MarkClustered(dataDir string) error {
	return os.WriteFile(filepath.Join(dataDir, "etcd", clusterMarker), nil, 0o600)
}

// Clustered reports whether the embedded member in dataDir has been part
// of a cluster of more than one (MarkClustered): its peer URL is then in
// the other members' records and must not change lightly.
func Clustered(dataDir string) bool { return clustered(filepath.Join(dataDir, "etcd")) }

func clustered(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, clusterMarker))
	return err == nil
}

// configureMember sets ec up as m says.
func configureMember(ec *embed.Config, dir string, m Member) error {
	ec.Name = "adit"
	if m.Name != "" {
		if err := CheckMemberName(m.Name); err != nil {
			return err
		}
		ec.Name = m.Name
	}
	// A lone member talks to no peer: ticks only drive its own election,
	// and short ticks make it leader (and Open return) in tens of
	// milliseconds instead of ~0.5s. A member of a cluster keeps etcd's
	// defaults, which ride out a loaded machine.
	ec.TickMs, ec.ElectionMs = 10, 100
	if m.PeerListener == nil {
		// The advertised peer URL only names the member in the cluster's records.
		ec.AdvertisePeerUrls = []url.URL{{Scheme: "http", Host: "127.0.0.1:0"}}
		ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
		return nil
	}
	if err := CheckPeerURL(m.PeerURL); err != nil {
		return err
	}
	if m.PeerCertFile == "" || m.PeerKeyFile == "" || m.CAFile == "" {
		return errors.New("store: a peer listener needs a peer certificate, its key and the CA")
	}
	u, _ := url.Parse(m.PeerURL)
	ec.AdvertisePeerUrls = []url.URL{*u}
	// etcd dials peers with these files; it takes peer traffic on
	// PeerListener, which the store serves (servePeers).
	ec.PeerTLSInfo.CertFile, ec.PeerTLSInfo.KeyFile, ec.PeerTLSInfo.TrustedCAFile = m.PeerCertFile, m.PeerKeyFile, m.CAFile
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	if m.InitialCluster != "" && !HasMember(filepath.Dir(dir)) {
		ec.InitialCluster = m.InitialCluster
		ec.ClusterState = embed.ClusterStateFlagExisting
		if err := MarkClustered(filepath.Dir(dir)); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	if clustered(dir) {
		ec.TickMs, ec.ElectionMs = 100, 1000
	}
	return nil
}

// peerTLS is the TLS config of the peer listener: the member's
// certificate, and a client certificate from the fleet's CA required.
func peerTLS(m Member) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(m.PeerCertFile, m.PeerKeyFile)
	if err != nil {
		return nil, fmt.Errorf("store: peer certificate: %w", err)
	}
	caPEM, err := os.ReadFile(m.CAFile)
	if err != nil {
		return nil, fmt.Errorf("store: fleet CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("store: fleet CA %s holds no PEM certificate", m.CAFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// servePeers serves etcd's peer handler on the member's listener until
// the store closes.
func (s *Store) servePeers(m Member, conf *tls.Config, logger *slog.Logger) {
	srv := &http.Server{
		Handler:           etcdhttp.NewPeerHandler(s.etcd.GetLogger(), s.etcd.Server),
		ReadHeaderTimeout: 10 * time.Second,
		// A peer's failed handshake or bad request: debug, as anyone
		// who reaches the port causes it at will.
		ErrorLog: log.New(slogWriter{logger}, "", 0),
	}
	s.peerSrv = srv
	go srv.Serve(tls.NewListener(m.PeerListener, conf))
}

// slogWriter logs what net/http's server reports at debug level.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Debug("etcd peer listener", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}

// awaitVoter waits until the embedded member is a voting member: a
// member that joined starts as a learner, which serves no request, until
// a voting member promotes it.
func (s *Store) awaitVoter(ctx context.Context, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for s.etcd.Server.IsLearner() {
		select {
		case <-tick.C:
		case <-t.C:
			return fmt.Errorf("store: not promoted from learner to voting member within %v: is a voting member of the cluster up?", timeout)
		case <-s.etcd.Server.StopNotify():
			return errors.New("store: the embedded etcd stopped while joining the cluster")
		case <-ctx.Done():
			return fmt.Errorf("store: joining the cluster: %w", ctx.Err())
		}
	}
	return nil
}

// updatePeerURL puts the member's peer URL into the cluster's records if
// they name another (a lone member's placeholder, or a new address).
func (s *Store) updatePeerURL(ctx context.Context, peerURL string) error {
	id := uint64(s.etcd.Server.MemberID())
	resp, err := s.cli.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("store: list members: %w", err)
	}
	for _, m := range resp.Members {
		if m.ID != id {
			continue
		}
		if len(m.PeerURLs) == 1 && m.PeerURLs[0] == peerURL {
			return nil
		}
		if _, err := s.cli.MemberUpdate(ctx, id, []string{peerURL}); err != nil {
			return fmt.Errorf("store: update this member's peer URL to %s: %w", peerURL, err)
		}
		return nil
	}
	return errors.New("store: this member is not in the cluster's member list (was it removed?)")
}

// promoteLearners promotes every learner member that has caught up with
// the leader, until ctx is done: how a member that joined becomes a voter.
// Every voting member with a peer listener runs it; etcd refuses a promote
// of a learner not yet in sync, which is retried a moment later.
func (s *Store) promoteLearners(ctx context.Context, logger *slog.Logger) {
	defer close(s.promoterDone)
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := s.cli.MemberList(cctx)
		if err != nil {
			cancel()
			continue
		}
		// Not etcd's IsLearner: it panics once this member is removed.
		self := uint64(s.etcd.Server.MemberID())
		i := slices.IndexFunc(resp.Members, func(m *etcdserverpb.Member) bool { return m.ID == self })
		if i < 0 {
			cancel()
			return // removed from the cluster
		}
		if resp.Members[i].IsLearner {
			cancel()
			continue
		}
		for _, m := range resp.Members {
			if !m.IsLearner || m.Name == "" { // not started yet
				continue
			}
			_, err := s.cli.MemberPromote(cctx, m.ID)
			switch {
			case err == nil:
				logger.Info("promoted a member that joined to voting member", "member", m.Name)
			case errors.Is(err, rpctypes.ErrMemberLearnerNotReady), errors.Is(err, rpctypes.ErrMemberNotLearner),
				errors.Is(err, rpctypes.ErrMemberNotFound):
			default:
				logger.Debug("could not promote a learner", "member", m.Name, "err", err)
			}
		}
		cancel()
	}
}

// MemberID is the embedded member's etcd ID (0 with an external etcd).
func (s *Store) MemberID() uint64 {
	if s.etcd == nil {
		return 0
	}
	return uint64(s.etcd.Server.MemberID())
}

// Stopped is closed when the embedded etcd server stops: on Close, or
// when the cluster removed this member (nil, never closed, with an
// external etcd).
func (s *Store) Stopped() <-chan struct{} {
	if s.etcd == nil {
		return nil
	}
	return s.etcd.Server.StopNotify()
}
