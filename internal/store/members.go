package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// MemberInfo is one member of the etcd cluster.
type MemberInfo struct {
	ID       uint64
	Name     string // empty until the member has started
	PeerURLs []string
	Learner  bool // not yet a voting member
}

// Errors of the member calls; test with errors.Is.
var (
	ErrMemberExists    = errors.New("store: member exists")
	ErrNoSuchMember    = errors.New("store: no such member")
	ErrMemberJoining   = errors.New("store: another member is joining")
	ErrLastMember      = errors.New("store: the last member")
	ErrNotEmbedded     = errors.New("store: not an embedded etcd member")
	ErrQuorumAtRisk    = errors.New("store: removing it would lose the quorum")
	ErrPeerListenerOff = errors.New("store: this member takes no peer traffic")
)

// Members lists the cluster's members by name, unstarted ones last.
func (s *Store) Members(ctx context.Context) ([]MemberInfo, error) {
	resp, err := s.cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: list members: %w", err)
	}
	ms := make([]MemberInfo, 0, len(resp.Members))
	for _, m := range resp.Members {
		ms = append(ms, MemberInfo{ID: m.ID, Name: m.Name, PeerURLs: slices.Clone(m.PeerURLs), Learner: m.IsLearner})
	}
	slices.SortFunc(ms, func(a, b MemberInfo) int {
		switch {
		case a.Name == "" && b.Name != "":
			return 1
		case a.Name != "" && b.Name == "":
			return -1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return ms, nil
}

// AddMember adds a member named name at peerURL to the cluster, as a
// learner (it does not count towards the quorum until it has caught up
// and a voting member promotes it), and returns the initial cluster the
// new member starts with (Member.InitialCluster). A started member of
// that name is ErrMemberExists; an unstarted member at peerURL (an
// earlier attempt of the same edge) is replaced.
func (s *Store) AddMember(ctx context.Context, name, peerURL string) (initialCluster string, err error) {
	if s.peerSrv == nil {
		return "", fmt.Errorf("%w: an edge can only join an edge whose embedded etcd takes peer traffic", ErrPeerListenerOff)
	}
	if err := CheckMemberName(name); err != nil {
		return "", err
	}
	if err := CheckPeerURL(peerURL); err != nil {
		return "", err
	}
	ms, err := s.Members(ctx)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		switch {
		case m.Name == name:
			return "", fmt.Errorf("%w: %s is already a member (remove it first if it is gone for good)", ErrMemberExists, name)
		case slices.Contains(m.PeerURLs, peerURL) && m.Name != "":
			return "", fmt.Errorf("%w: member %s already has peer URL %s", ErrMemberExists, m.Name, peerURL)
		case slices.Contains(m.PeerURLs, peerURL):
			// An earlier attempt that never started.
			if _, err := s.cli.MemberRemove(ctx, m.ID); err != nil && !errors.Is(err, rpctypes.ErrMemberNotFound) {
				return "", fmt.Errorf("store: remove the unstarted member at %s: %w", peerURL, err)
			}
		}
	}
	// etcd adds no member until every voting member has been connected
	// for 5s (its strict reconfiguration check): right after a member
	// joined, the next one waits that long.
	resp, err := s.cli.MemberAddAsLearner(ctx, []string{peerURL})
	for errors.Is(err, rpctypes.ErrUnhealthy) {
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w: the cluster is not healthy (a member is down or has just joined): %v", ErrMemberJoining, err)
		case <-time.After(250 * time.Millisecond):
		}
		resp, err = s.cli.MemberAddAsLearner(ctx, []string{peerURL})
	}
	if errors.Is(err, rpctypes.ErrTooManyLearners) {
		return "", fmt.Errorf("%w: another edge is still catching up as a learner; retry in a moment", ErrMemberJoining)
	}
	if err != nil {
		return "", fmt.Errorf("store: add member %s: %w", name, err)
	}
	var parts []string
	for _, m := range resp.Members {
		n := m.Name
		if m.ID == resp.Member.ID {
			n = name
		}
		if n == "" {
			s.cli.MemberRemove(ctx, resp.Member.ID)
			return "", fmt.Errorf("%w: the member at %s has not started yet; retry once it has, or remove it", ErrMemberJoining, strings.Join(m.PeerURLs, ","))
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	return strings.Join(parts, ","), nil
}

// RemoveMember removes the member named name (or, if name is a member's
// ID in hex, that one) from the cluster. Removing this process's own
// member stops its embedded server (Stopped).
func (s *Store) RemoveMember(ctx context.Context, name string) (MemberInfo, error) {
	ms, err := s.Members(ctx)
	if err != nil {
		return MemberInfo{}, err
	}
	i := slices.IndexFunc(ms, func(m MemberInfo) bool { return m.Name == name || fmt.Sprintf("%x", m.ID) == name })
	if i < 0 {
		return MemberInfo{}, fmt.Errorf("%w: %q", ErrNoSuchMember, name)
	}
	if len(ms) == 1 {
		return MemberInfo{}, fmt.Errorf("%w: %s is the cluster's only member", ErrLastMember, name)
	}
	if ms[i].ID == s.MemberID() && s.stopPromoter != nil {
		// The promoter asks etcd about this member, which panics once it is gone.
		s.stopPromoter()
		<-s.promoterDone
	}
	// etcd removes a voting member only while enough others have been
	// connected for 5s; a moment after a join or a restart, that waits.
	_, err = s.cli.MemberRemove(ctx, ms[i].ID)
	for errors.Is(err, rpctypes.ErrUnhealthy) {
		select {
		case <-ctx.Done():
			return MemberInfo{}, fmt.Errorf("%w: %s: too few members have been up for 5s: %v", ErrQuorumAtRisk, name, err)
		case <-time.After(250 * time.Millisecond):
		}
		_, err = s.cli.MemberRemove(ctx, ms[i].ID)
	}
	if err != nil && ms[i].ID == s.MemberID() {
		// Removing this member stops its server, at times before it answers.
		select {
		case <-s.Stopped():
			err = nil
		case <-time.After(5 * time.Second):
		}
	}
	if err != nil && strings.Contains(err.Error(), "not enough started members") {
		return MemberInfo{}, fmt.Errorf("%w: %s: %v", ErrQuorumAtRisk, name, err)
	}
	if err != nil {
		return MemberInfo{}, fmt.Errorf("store: remove member %s: %w", name, err)
	}
	return ms[i], nil
}
