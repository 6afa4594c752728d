package edge

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/internal/fleet"
	"github.com/adit-dev/adit/internal/pki"
	"github.com/adit-dev/adit/internal/store"
)

// Edges that form one network on their embedded etcd servers, as k3s's
// servers do: the first edge starts alone; the next one starts with
// Config.JoinURL and a join token, asks that edge's API to add it as an
// etcd member (POST /v1/fleet/join), and gets back the initial cluster and
// the fleet's CA, from which it issues its own certificates. etcd's peer
// traffic goes over mutual TLS with certificates from that CA, on a
// listener of the edge (Config.EtcdPeerAddr). The API lists the members
// (GET /v1/fleet/members) and removes one (DELETE /v1/fleet/members/NAME):
// this edge, which then leaves and stops, or a dead one.

// Files in the data directory.
const (
	peerAddrFile     = "etcd-peer-addr" // the peer listener's last address, to keep its port
	peerCertFile     = "etcd-peer.pem"  // in tls/: this edge's peer certificate
	peerKeyFile      = "etcd-peer-key.pem"
	peerCertValidity = 10 * 365 * 24 * time.Hour // reissued at every start
)

// openMember binds the etcd peer listener and, with Config.JoinURL, joins
// the fleet (writing its CA into the data directory), before the edge's
// certificates are loaded. It returns the peer listener and its URL (nil
// with an external etcd) and the initial cluster to start with ("" but
// when joining).
func (s *Server) openMember(ctx context.Context) (ln net.Listener, peerURL, initialCluster string, err error) {
	cfg := s.cfg
	if len(cfg.EtcdEndpoints) > 0 {
		if cfg.JoinURL != "" {
			return nil, "", "", errors.New("edge: --join is for edges with an embedded etcd; edges on an external etcd share it already")
		}
		return nil, "", "", nil
	}
	if cfg.JoinURL != "" && cfg.JoinToken == "" {
		return nil, "", "", errors.New("edge: --join needs a join token (--join-token-file)")
	}
	addr := s.peerListenAddr()
	bound, err := net.Listen("tcp", addr)
	if err != nil && addr != s.cfg.EtcdPeerAddr && !store.Clustered(cfg.DataDir) {
		// The port kept from last time is taken; a lone member has no peer
		// that knows it, so any port will do.
		host, _, _ := net.SplitHostPort(addr)
		addr = net.JoinHostPort(host, "0")
		bound, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return nil, "", "", listenError("etcd-peer", addr, fmt.Errorf("edge: etcd peer listener: %w", err))
	}
	defer func() {
		if err != nil {
			bound.Close()
		}
	}()
	ln = bound
	pki.WriteFileAtomic(filepath.Join(cfg.DataDir, peerAddrFile), []byte(ln.Addr().String()+"\n"), 0o600)
	peerURL = "https://" + s.reachable(ln.Addr())
	if cfg.JoinURL == "" {
		return ln, peerURL, "", nil
	}
	if store.HasMember(cfg.DataDir) {
		s.log.Info("already a member of a fleet: --join ignored", "data_dir", cfg.DataDir)
		return ln, peerURL, "", nil
	}
	tok, err := fleet.ParseToken(cfg.JoinToken)
	if err != nil {
		return nil, "", "", fmt.Errorf("edge: --join-token-file: %w", err)
	}
	s.log.Info("joining the fleet", "through", cfg.JoinURL, "peer_url", peerURL)
	jr, err := fleet.Join(ctx, cfg.JoinURL, tok, control.JoinRequest{Name: s.node, PeerURL: peerURL, Version: orDefault(cfg.Version, "devel")})
	if err != nil {
		return nil, "", "", fmt.Errorf("edge: %w", err)
	}
	// The fleet's CA replaces any this data directory had: every edge
	// issues its certificates from it.
	dir := filepath.Join(cfg.DataDir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", "", fmt.Errorf("edge: %w", err)
	}
	if err := pki.WriteFileAtomic(filepath.Join(dir, pki.CAKeyFile), []byte(jr.CAKeyPEM), 0o600); err != nil {
		return nil, "", "", fmt.Errorf("edge: %w", err)
	}
	if err := pki.WriteFileAtomic(filepath.Join(dir, pki.CACertFile), []byte(jr.CACertPEM), 0o644); err != nil {
		return nil, "", "", fmt.Errorf("edge: %w", err)
	}
	return ln, peerURL, jr.InitialCluster, nil
}

// peerListenAddr is Config.EtcdPeerAddr, or the API listener's host;
// with port 0, the port the peer listener had last time (a member's peer
// URL is in the cluster's records, and the other members dial it).
func (s *Server) peerListenAddr() string {
	addr := s.cfg.EtcdPeerAddr
	if addr == "" {
		host, _, err := net.SplitHostPort(orDefault(s.cfg.APIAddr, "127.0.0.1:7845"))
		if err != nil {
			host = "127.0.0.1"
		}
		addr = net.JoinHostPort(host, "0")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port != "0" {
		return addr
	}
	b, err := os.ReadFile(filepath.Join(s.cfg.DataDir, peerAddrFile))
	if err != nil {
		return addr
	}
	lastHost, lastPort, err := net.SplitHostPort(strings.TrimSpace(string(b)))
	if err != nil || lastHost != host && !(host == "" && net.ParseIP(lastHost).IsUnspecified()) {
		return addr
	}
	return net.JoinHostPort(host, lastPort)
}

// certNames are the names the edge's certificates carry: the public
// names, and the hosts of the API and etcd peer listeners when they are
// addresses of their own, so other edges reach them verified.
func (s *Server) certNames(peerLn net.Listener) []string {
	names := slices.Clone(s.names)
	add := func(hostport string) {
		host, _, err := net.SplitHostPort(hostport)
		if ip := net.ParseIP(host); err == nil && ip != nil && !ip.IsUnspecified() && !slices.Contains(names, host) {
			names = append(names, host)
		}
	}
	add(orDefault(s.cfg.APIAddr, "127.0.0.1:7845"))
	add(orDefault(s.cfg.TunnelAddr, ":7844")) // connectors may be given it (fleet.go, tunnelAdvertise)
	add(s.cfg.PeerAddr)
	if host := specificHost(s.cfg.AdvertiseAddr); host != "" && !slices.Contains(names, host) {
		names = append(names, host)
	}
	if peerLn != nil {
		add(peerLn.Addr().String())
	}
	return names
}

// memberConfig issues the edge's etcd peer certificate from the fleet's
// CA and returns the store's Member.
func (s *Server) memberConfig(peerLn net.Listener, peerURL, initialCluster string, names []string) (store.Member, error) {
	if peerLn == nil {
		return store.Member{}, nil
	}
	dir := filepath.Join(s.cfg.DataDir, "tls")
	caKey, err := os.ReadFile(filepath.Join(dir, pki.CAKeyFile))
	if err != nil {
		return store.Member{}, fmt.Errorf("edge: fleet CA key: %w", err)
	}
	cert, key, err := pki.IssueEtcdPeerCert(s.bundle.CACertPEM, caKey, names, peerCertValidity)
	if err != nil {
		return store.Member{}, fmt.Errorf("edge: etcd peer certificate: %w", err)
	}
	m := store.Member{
		Name:           s.node,
		PeerListener:   peerLn,
		PeerURL:        peerURL,
		PeerCertFile:   filepath.Join(dir, peerCertFile),
		PeerKeyFile:    filepath.Join(dir, peerKeyFile),
		CAFile:         filepath.Join(dir, pki.CACertFile),
		InitialCluster: initialCluster,
	}
	if err := pki.WriteFileAtomic(m.PeerKeyFile, key, 0o600); err != nil {
		return store.Member{}, fmt.Errorf("edge: %w", err)
	}
	if err := pki.WriteFileAtomic(m.PeerCertFile, cert, 0o644); err != nil {
		return store.Member{}, fmt.Errorf("edge: %w", err)
	}
	if store.CheckMemberName(s.node) != nil {
		m.Name = "" // "adit": this edge cannot be joined by name
		s.log.Warn("the node name cannot name an etcd member: no edge can join this one", "node", s.node)
	}
	return m, nil
}

// withCAChain appends the CA's certificate to the edge's own certificate
// chain, so a joining edge finds the CA its join token pins (fleet.Join).
func withCAChain(chain [][]byte, caPEM []byte) [][]byte {
	block, _ := pem.Decode(caPEM)
	if block == nil {
		return chain
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return chain
	}
	return append(slices.Clone(chain), block.Bytes)
}

// fleetEndpoints are the fleet's API endpoints behind the API token:
// members and join tokens. The join itself (joinHandler) is served
// before the token check, as the join token is its credential.
func (s *Server) fleetEndpoints() []controlserver.Endpoint {
	return []controlserver.Endpoint{
		{Pattern: "GET /v1/fleet/members", Handle: s.listMembers},
		{Pattern: "DELETE /v1/fleet/members/{name}", Handle: s.removeMember},
		{Pattern: "POST /v1/fleet/join-tokens", Handle: s.createJoinToken},
		{Pattern: "GET /v1/fleet/join-tokens", Handle: s.listJoinTokens},
		{Pattern: "DELETE /v1/fleet/join-tokens/{id}", Handle: s.revokeJoinToken},
	}
}

// withJoin serves POST /v1/fleet/join beside the API handler.
func (s *Server) withJoin(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.HandleFunc("POST "+fleet.JoinPath, func(w http.ResponseWriter, r *http.Request) {
		if err := s.join(w, r); err != nil {
			var he *controlserver.APIError
			if !errors.As(err, &he) {
				he = &controlserver.APIError{Status: http.StatusInternalServerError, Code: "internal", Msg: "internal error; the edge's log has the details", Err: err}
			}
			if he.Err != nil {
				s.log.Error("join request failed", "remote", r.RemoteAddr, "err", he.Err)
			} else {
				// Anyone who reaches the API can cause this at will.
				s.rl.Logger(s.log).Warn("join refused", "remote", r.RemoteAddr, "reason", he.Msg)
			}
			controlserver.WriteJSON(w, he.Status, control.ErrorBody{Error: he.Msg, Code: he.Code})
		}
	})
	return mux
}

func apiErr(status int, code, format string, args ...any) *controlserver.APIError {
	return &controlserver.APIError{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// join adds the edge that asks, with a join token, as an etcd member, and
// answers the initial cluster and the fleet's CA.
func (s *Server) join(w http.ResponseWriter, r *http.Request) error {
	scheme, raw, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || raw == "" {
		return apiErr(http.StatusUnauthorized, "unauthorized", "a join needs a join token: Authorization: Bearer aditjoin....")
	}
	tok, err := fleet.ParseToken(raw)
	if err != nil {
		return apiErr(http.StatusUnauthorized, "unauthorized", "%v", err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := fleet.CheckToken(ctx, s.store.Client(), tok, s.bundle.CACertPEM); errors.Is(err, fleet.ErrBadToken) {
		return apiErr(http.StatusUnauthorized, "unauthorized", "%v", err)
	} else if err != nil {
		return err
	}
	var req control.JoinRequest
	if err := controlserver.DecodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := fleet.CheckJoinRequest(req); err != nil {
		return apiErr(http.StatusBadRequest, "invalid", "%s", strings.TrimPrefix(err.Error(), "control: "))
	}
	caKey, err := os.ReadFile(filepath.Join(s.cfg.DataDir, "tls", pki.CAKeyFile))
	if err != nil {
		return fmt.Errorf("fleet CA key: %w", err)
	}
	ic, err := s.store.AddMember(ctx, req.Name, req.PeerURL)
	switch {
	case errors.Is(err, store.ErrMemberExists), errors.Is(err, store.ErrMemberJoining), errors.Is(err, store.ErrPeerListenerOff):
		return apiErr(http.StatusConflict, "conflict", "%s", strings.TrimPrefix(err.Error(), "store: "))
	case err != nil:
		return err
	}
	if err := store.MarkClustered(s.cfg.DataDir); err != nil {
		s.log.Warn("could not mark the etcd data as clustered", "err", err)
	}
	s.log.Info("an edge joins the fleet", "name", req.Name, "peer_url", req.PeerURL, "version", req.Version, "remote", r.RemoteAddr, "join_token", tok.ID)
	controlserver.WriteJSON(w, http.StatusOK, control.JoinResponse{
		InitialCluster: ic,
		CACertPEM:      string(s.bundle.CACertPEM),
		CAKeyPEM:       string(caKey),
	})
	return nil
}

func (s *Server) listMembers(w http.ResponseWriter, r *http.Request) error {
	if !s.store.Embedded() {
		return apiErr(http.StatusConflict, "conflict", "this edge uses an external etcd: list its members with etcdctl")
	}
	ms, err := s.store.Members(r.Context())
	if err != nil {
		return err
	}
	out := make([]control.EdgeMember, 0, len(ms))
	for _, m := range ms {
		out = append(out, edgeMember(m))
	}
	controlserver.WriteJSON(w, http.StatusOK, out)
	return nil
}

// removeMember removes a member: this edge's own, after which it leaves
// (Left), or a dead edge's; a live edge other than this one is refused, as
// its own API removes it cleanly.
func (s *Server) removeMember(w http.ResponseWriter, r *http.Request) error {
	if !s.store.Embedded() {
		return apiErr(http.StatusConflict, "conflict", "this edge uses an external etcd: remove its members with etcdctl")
	}
	name := r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	ms, err := s.store.Members(ctx)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(ms, func(m store.MemberInfo) bool { return m.Name == name || strconv.FormatUint(m.ID, 16) == name })
	if i < 0 {
		return apiErr(http.StatusNotFound, "not_found", "no member %q (see `adit edge members`)", name)
	}
	if len(ms) == 1 {
		return apiErr(http.StatusConflict, "conflict", "%s is the fleet's only member: there is nothing to leave", name)
	}
	if ms[i].ID == s.store.MemberID() {
		if !s.leaving.CompareAndSwap(false, true) {
			return apiErr(http.StatusConflict, "conflict", "%s is leaving already", name)
		}
		s.log.Info("leaving the fleet, as asked through the API")
		s.SetHealth(ctx, control.EdgeHealthDraining)
		controlserver.WriteJSON(w, http.StatusAccepted, edgeMember(ms[i]))
		go func() {
			s.Close()
			close(s.left)
		}()
		return nil
	}
	if ms[i].Name != "" {
		resp, err := s.store.Client().Get(ctx, store.EdgeKey(ms[i].Name))
		if err != nil {
			return err
		}
		if len(resp.Kvs) > 0 {
			return apiErr(http.StatusConflict, "conflict", "edge %s is alive: run `adit edge leave` against its own API, or stop it first", ms[i].Name)
		}
	}
	removed, err := s.store.RemoveMember(ctx, name)
	switch {
	case errors.Is(err, store.ErrNoSuchMember):
		return apiErr(http.StatusNotFound, "not_found", "no member %q", name)
	case errors.Is(err, store.ErrLastMember), errors.Is(err, store.ErrQuorumAtRisk):
		return apiErr(http.StatusConflict, "conflict", "%s", strings.TrimPrefix(err.Error(), "store: "))
	case err != nil:
		return err
	}
	s.log.Info("removed a member from the fleet", "member", removed.Name, "id", strconv.FormatUint(removed.ID, 16))
	controlserver.WriteJSON(w, http.StatusOK, edgeMember(removed))
	return nil
}

// removeSelf removes this edge's member from the cluster (Close, when
// leaving): its etcd server then stops, and its data is of no use.
func (s *Server) removeSelf() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.store.RemoveMember(ctx, strconv.FormatUint(s.store.MemberID(), 16)); err != nil {
		return fmt.Errorf("edge: leaving the fleet: %w (the member stays; remove it from another edge with `adit edge leave %s`)", err, s.node)
	}
	select {
	case <-s.store.Stopped():
	case <-ctx.Done():
	}
	return nil
}

// EtcdPeerURL is where the other members of the fleet reach this edge's
// embedded etcd ("" with an external etcd).
func (s *Server) EtcdPeerURL() string { return s.etcdPeerURL }

// Left is closed once the edge has left the fleet (DELETE
// /v1/fleet/members/ of its own name) and stopped.
func (s *Server) Left() <-chan struct{} { return s.left }

func (s *Server) createJoinToken(w http.ResponseWriter, r *http.Request) error {
	if !s.store.Embedded() {
		return apiErr(http.StatusConflict, "conflict", "this edge uses an external etcd: edges join a fleet by sharing it (--etcd-endpoints), not with a join token")
	}
	var req control.CreateJoinTokenRequest
	if err := controlserver.DecodeJSON(w, r, &req); err != nil {
		return err
	}
	tok, info, err := fleet.CreateToken(r.Context(), s.store.Client(), s.bundle.CACertPEM, req)
	if err != nil {
		return err
	}
	s.log.Info("join token created", "id", info.ID, "expires", info.ExpiresAt)
	controlserver.WriteJSON(w, http.StatusCreated, control.CreateJoinTokenResponse{JoinToken: info, Token: tok.String()})
	return nil
}

func (s *Server) listJoinTokens(w http.ResponseWriter, r *http.Request) error {
	ts, err := fleet.ListTokens(r.Context(), s.store.Client())
	if err != nil {
		return err
	}
	controlserver.WriteJSON(w, http.StatusOK, ts)
	return nil
}

func (s *Server) revokeJoinToken(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := fleet.RevokeToken(r.Context(), s.store.Client(), id); err != nil {
		return err
	}
	s.log.Info("join token revoked", "id", id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func edgeMember(m store.MemberInfo) control.EdgeMember {
	return control.EdgeMember{ID: strconv.FormatUint(m.ID, 16), Name: m.Name, PeerURLs: m.PeerURLs, Learner: m.Learner}
}
