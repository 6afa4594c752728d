package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// Peer certificates. Edges of one fleet share a CA (the files CACertFile
// and CAKeyFile in each edge's directory) and talk to each other over a
// peer link authenticated both ways with it. Each edge issues itself a
// peer certificate that says "the edge NODE" in a way nothing else the CA
// signs does: a URI SAN adit-edge:NODE (NODE path-escaped), and both the
// server and the client extended key usages. A leaf without that URI (the
// edge's own server certificate, any other certificate of the CA) is not a
// peer, whatever else it holds.

// File names of the peer certificate inside the directory given to
// LoadOrCreatePeer.
const (
	PeerCertFile = "peer.pem"
	PeerKeyFile  = "peer-key.pem"
)

// PeerURIScheme is the scheme of the URI SAN that names an edge in its
// peer certificate: adit-edge:NODE.
const PeerURIScheme = "adit-edge"

// PeerURI is the URI SAN of the edge named node.
func PeerURI(node string) *url.URL {
	return &url.URL{Scheme: PeerURIScheme, Opaque: url.PathEscape(node)}
}

// LoadOrCreatePeer returns the peer certificate of the edge named node
// kept in dir (PeerCertFile, PeerKeyFile), issuing a new one from the CA
// in dir (CACertFile, CAKeyFile) when it is missing, unreadable, not
// signed by that CA, for another node, or expires within RenewBefore.
func LoadOrCreatePeer(dir, node string) (tls.Certificate, error) {
	if node == "" {
		return tls.Certificate{}, errors.New("pki: peer certificate: empty node name")
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: peer certificate: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, PeerCertFile), filepath.Join(dir, PeerKeyFile)
	certPEM, errCert := os.ReadFile(certPath)
	keyPEM, errKey := os.ReadFile(keyPath)
	if errCert == nil && errKey == nil {
		if c, err := tls.X509KeyPair(certPEM, keyPEM); err == nil {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(caPEM)
			leaf, err := x509.ParseCertificate(c.Certificate[0])
			if err == nil && time.Now().Add(RenewBefore).Before(leaf.NotAfter) {
				if got, err := VerifyPeer(leaf, nil, pool, x509.ExtKeyUsageClientAuth); err == nil && got == node {
					return c, nil
				}
			}
		}
	}
	caKeyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: peer certificate: the CA key is needed to issue one: %w", err)
	}
	certPEM, keyPEM, err = IssuePeerCert(caPEM, caKeyPEM, node, LeafValidity)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := WriteFileAtomic(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: peer certificate: %w", err)
	}
	return c, nil
}

// IssuePeerCert signs the peer certificate of the edge named node with
// the CA: ECDSA P-256, the URI SAN PeerURI(node), usable as TLS server
// and client.
func IssuePeerCert(caCertPEM, caKeyPEM []byte, node string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if node == "" {
		return nil, nil, errors.New("pki: issue peer certificate: empty node name")
	}
	return issue(caCertPEM, caKeyPEM, leafSpec{
		what:       "issue peer certificate",
		commonName: "adit edge peer",
		uris:       []*url.URL{PeerURI(node)},
		usage:      []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, validity)
}

// VerifyPeer checks that leaf (with intermediates, which may be nil) is
// an edge's peer certificate signed by roots, valid now for usage
// (x509.ExtKeyUsageClientAuth when the peer dialed, ServerAuth when it was
// dialed), and returns the node it names. A certificate without exactly
// one adit-edge: URI is refused, even if the CA signed it.
func VerifyPeer(leaf *x509.Certificate, intermediates []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage) (string, error) {
	if leaf == nil {
		return "", errors.New("pki: peer: no certificate")
	}
	opts := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}
	if len(intermediates) > 0 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range intermediates {
			opts.Intermediates.AddCert(c)
		}
	}
	if _, err := leaf.Verify(opts); err != nil {
		return "", fmt.Errorf("pki: peer: %w", err)
	}
	var node string
	found := 0
	for _, u := range leaf.URIs {
		if u.Scheme != PeerURIScheme {
			continue
		}
		found++
		n, err := url.PathUnescape(u.Opaque)
		if err != nil || n == "" || u.Host != "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
			return "", fmt.Errorf("pki: peer: malformed %s URI %q", PeerURIScheme, u.String())
		}
		node = n
	}
	switch found {
	case 0:
		return "", fmt.Errorf("pki: peer: the certificate (subject %q) is not an edge's peer certificate: no %s: URI", leaf.Subject.String(), PeerURIScheme)
	case 1:
		return node, nil
	}
	return "", fmt.Errorf("pki: peer: the certificate names %d edges", found)
}
