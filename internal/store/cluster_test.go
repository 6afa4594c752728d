package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adit-dev/adit/internal/pki"
)

// testCA writes a fleet CA to dir and returns its files' contents.
func testCA(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	c, k, err := pki.NewCA("test fleet CA")
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

// testMember binds a peer listener on 127.0.0.1:0 and issues its
// certificate from the CA.
func testMember(t *testing.T, name string, caPEM, caKeyPEM []byte) Member {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := pki.IssueEtcdPeerCert(caPEM, caKeyPEM, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m := Member{Name: name, PeerListener: ln, PeerURL: "https://" + ln.Addr().String(),
		PeerCertFile: filepath.Join(dir, "peer.pem"), PeerKeyFile: filepath.Join(dir, "peer-key.pem"), CAFile: filepath.Join(dir, "ca.pem")}
	for f, b := range map[string][]byte{m.PeerCertFile: cert, m.PeerKeyFile: key, m.CAFile: caPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func openMember(t *testing.T, dataDir string, m Member) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, Config{DataDir: dataDir, Member: m, DialTimeout: 20 * time.Second})
	if err != nil {
		t.Fatalf("open member %s: %v", m.Name, err)
	}
	return s
}

func memberNames(t *testing.T, s *Store) []string {
	t.Helper()
	ms, err := s.Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, m := range ms {
		n := m.Name
		if m.Learner {
			n += "(learner)"
		}
		ns = append(ns, n)
	}
	return ns
}

// TestCluster: three embedded members form one cluster over mutual TLS
// from one CA: the second and third join through the first's AddMember,
// as learners promoted once in sync; a write on one is read on another;
// with one of three stopped, the other two still take writes; a member
// removed stops.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three etcd members")
	}
	ctx := context.Background()
	caPEM, caKeyPEM := testCA(t)
	m1 := testMember(t, "one", caPEM, caKeyPEM)
	s1 := openMember(t, t.TempDir(), m1)
	defer s1.Close()

	var stores []*Store
	for _, name := range []string{"two", "three"} {
		m := testMember(t, name, caPEM, caKeyPEM)
		ic, err := s1.AddMember(ctx, name, m.PeerURL)
		if err != nil {
			t.Fatalf("AddMember(%s): %v", name, err)
		}
		if !strings.Contains(ic, name+"="+m.PeerURL) || !strings.Contains(ic, "one="+m1.PeerURL) {
			t.Errorf("initial cluster %q lacks a member", ic)
		}
		m.InitialCluster = ic
		dir := t.TempDir()
		s := openMember(t, dir, m)
		defer s.Close()
		if !clustered(filepath.Join(dir, "etcd")) {
			t.Errorf("member %s not marked clustered", name)
		}
		stores = append(stores, s)
	}
	s2, s3 := stores[0], stores[1]
	if got := memberNames(t, s3); !slices.Equal(got, []string{"one", "three", "two"}) {
		t.Errorf("members: got %v, want one, three, two, all voting", got)
	}

	if _, err := s1.AddMember(ctx, "two", "https://127.0.0.1:1"); !errors.Is(err, ErrMemberExists) {
		t.Errorf("adding a name again: got %v, want ErrMemberExists", err)
	}
	for _, bad := range []string{"http://127.0.0.1:1", "https://127.0.0.1", "https://u@127.0.0.1:1", "https://127.0.0.1:1/x", "https://127.0.0.1:0"} {
		if _, err := s1.AddMember(ctx, "four", bad); err == nil || !strings.Contains(err.Error(), "peer URL") {
			t.Errorf("AddMember(%q): got %v, want a peer URL error", bad, err)
		}
	}
	if _, err := s1.AddMember(ctx, "fo,ur", "https://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "member name") {
		t.Errorf("AddMember(fo,ur): got %v, want a member name error", err)
	}

	if _, err := s1.Client().Put(ctx, "/adit/test", "from one"); err != nil {
		t.Fatal(err)
	}
	resp, err := s3.Client().Get(ctx, "/adit/test")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "from one" {
		t.Fatalf("read on three: %v %v", resp, err)
	}

	// One of three down: the other two keep the quorum.
	s2.Close()
	for i := range 3 {
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_, err := s3.Client().Put(wctx, "/adit/test", fmt.Sprint("after two stopped ", i))
		cancel()
		if err != nil {
			t.Fatalf("write with one of three down: %v", err)
		}
	}
	if _, err := s1.RemoveMember(ctx, "two"); err != nil {
		t.Fatalf("RemoveMember(two): %v", err)
	}
	if _, err := s1.RemoveMember(ctx, "two"); !errors.Is(err, ErrNoSuchMember) {
		t.Errorf("removing it again: got %v, want ErrNoSuchMember", err)
	}
	// A member removed stops.
	if _, err := s3.RemoveMember(ctx, "three"); err != nil {
		t.Fatalf("RemoveMember(three) on three: %v", err)
	}
	select {
	case <-s3.Stopped():
	case <-time.After(30 * time.Second):
		t.Fatal("the removed member's server did not stop")
	}
	if _, err := s1.RemoveMember(ctx, "one"); !errors.Is(err, ErrLastMember) {
		t.Errorf("removing the last member: got %v, want ErrLastMember", err)
	}
	if _, err := s1.Client().Put(ctx, "/adit/test", "alone"); err != nil {
		t.Errorf("write on the last member: %v", err)
	}
}

// TestPeerListenerWantsFleetCert: the peer listener takes no client
// without a certificate from the fleet's CA.
func TestPeerListenerWantsFleetCert(t *testing.T) {
	caPEM, caKeyPEM := testCA(t)
	m := testMember(t, "one", caPEM, caKeyPEM)
	s := openMember(t, t.TempDir(), m)
	defer s.Close()
	otherCA, otherKey := testCA(t)
	intruder := testMember(t, "intruder", otherCA, otherKey)
	intruder.PeerListener.Close()
	intruder.InitialCluster = "one=" + m.PeerURL + ",intruder=" + intruder.PeerURL
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Open(ctx, Config{DataDir: t.TempDir(), Member: intruder, DialTimeout: 5 * time.Second}); err == nil {
		t.Fatal("a member with another CA's certificate joined")
	}
	if got := memberNames(t, s); !slices.Equal(got, []string{"one"}) {
		t.Errorf("members: %v", got)
	}
}
