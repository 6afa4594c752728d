package pki

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func parseLeaf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	c, err := parseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestVerifyPeer: only a peer certificate of the fleet's CA names an edge;
// the edge's server certificate, another CA's peer certificate and a
// certificate used the wrong way round are refused.
func TestVerifyPeer(t *testing.T) {
	caPEM, caKey, err := NewCA("fleet CA")
	if err != nil {
		t.Fatal(err)
	}
	otherPEM, otherKey, err := NewCA("other CA")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	peer, _, err := IssuePeerCert(caPEM, caKey, "edge-a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	odd, _, err := IssuePeerCert(caPEM, caKey, "edge/1%ü", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	server, _, err := IssueServerCert(caPEM, caKey, []string{"edge-a", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _, err := IssuePeerCert(otherPEM, otherKey, "edge-a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		cert     []byte
		usage    x509.ExtKeyUsage
		wantNode string
		wantErr  string
	}{
		{"peer as client", peer, x509.ExtKeyUsageClientAuth, "edge-a", ""},
		{"peer as server", peer, x509.ExtKeyUsageServerAuth, "edge-a", ""},
		{"escaped node name", odd, x509.ExtKeyUsageClientAuth, "edge/1%ü", ""},
		{"edge server certificate as client", server, x509.ExtKeyUsageClientAuth, "", "incompatible key usage"},
		{"edge server certificate as server", server, x509.ExtKeyUsageServerAuth, "", "not an edge's peer certificate"},
		{"another CA", foreign, x509.ExtKeyUsageClientAuth, "", "unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node, err := VerifyPeer(parseLeaf(t, tc.cert), nil, roots, tc.usage)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got node %q, err %v; want an error with %q", node, err, tc.wantErr)
				}
				return
			}
			if err != nil || node != tc.wantNode {
				t.Fatalf("got %q, %v; want %q", node, err, tc.wantNode)
			}
		})
	}
}

// TestLoadOrCreatePeer: the certificate is kept across calls and issued
// again for another node name.
func TestLoadOrCreatePeer(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := LoadOrCreate(dir, nil); err != nil {
		t.Fatal(err)
	}
	a, err := LoadOrCreatePeer(dir, "edge-a")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, PeerKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("peer key file: %v, %v; want mode 0600", fi, err)
	}
	again, err := LoadOrCreatePeer(dir, "edge-a")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Certificate[0], again.Certificate[0]) {
		t.Error("a second call issued a new certificate; want the kept one")
	}
	b, err := LoadOrCreatePeer(dir, "edge-b")
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	leaf, _ := x509.ParseCertificate(b.Certificate[0])
	if node, err := VerifyPeer(leaf, nil, roots, x509.ExtKeyUsageClientAuth); err != nil || node != "edge-b" {
		t.Fatalf("after renaming: %q, %v; want edge-b", node, err)
	}
	if _, err := LoadOrCreatePeer(t.TempDir(), "edge-a"); err == nil {
		t.Error("a directory without a CA: got a certificate, want an error")
	}
}
