// Package pki makes and loads the certificates adit's edge serves: a private
// ECDSA P-256 certificate authority and the edge's leaf certificate signed by
// it, kept as PEM files in a directory and reused across restarts.
//
// The CA's certificate is what connectors and the CLI pin (it travels in the
// tunnel credentials file and in cert.json); its key never leaves the edge.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// CAValidity is how long a CA made by NewCA is valid.
const CAValidity = 10 * 365 * 24 * time.Hour

// LeafValidity is how long LoadOrCreate's edge certificate is valid.
const LeafValidity = 365 * 24 * time.Hour

// RenewBefore is how close to its expiry LoadOrCreate reissues the edge certificate.
const RenewBefore = 30 * 24 * time.Hour

// DefaultNames are always in the edge certificate LoadOrCreate issues.
var DefaultNames = []string{"localhost", "127.0.0.1", "::1"}

// File names inside the directory given to LoadOrCreate.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
	CertFile   = "edge.pem"
	KeyFile    = "edge-key.pem"
)

// backdate covers clock skew between the edge and its clients.
const backdate = 5 * time.Minute

// Bundle is a leaf certificate with its key and the CA that signed it, all PEM.
type Bundle struct {
	CACertPEM []byte
	CertPEM   []byte
	KeyPEM    []byte
}

// TLSCertificate returns the leaf as a tls.Certificate.
func (b *Bundle) TLSCertificate() (tls.Certificate, error) {
	c, err := tls.X509KeyPair(b.CertPEM, b.KeyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: %w", err)
	}
	return c, nil
}

// CAPool returns a pool holding the bundle's CA certificate.
func (b *Bundle) CAPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(b.CACertPEM)
	return p
}

// NewCA makes a self-signed ECDSA P-256 CA valid for CAValidity.
func NewCA(commonName string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"adit"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// IssueServerCert signs an ECDSA P-256 server certificate with the CA. Each
// name becomes an IP SAN if it parses as an IP address, else a DNS SAN; the
// first name is also the subject's common name.
func IssueServerCert(caCertPEM, caKeyPEM []byte, names []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	return issueNamed(caCertPEM, caKeyPEM, names, validity, x509.ExtKeyUsageServerAuth)
}

// IssueEtcdPeerCert is IssueServerCert for a certificate that is both
// server and client: the one an edge's embedded etcd presents to the other
// members of the fleet's cluster (named by its peer URL's host, as etcd
// checks; unlike IssuePeerCert's, it names no edge).
func IssueEtcdPeerCert(caCertPEM, caKeyPEM []byte, names []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	return issueNamed(caCertPEM, caKeyPEM, names, validity, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
}

// issueNamed issues a leaf for names (the first is also the common name)
// with the extended key usages usage.
func issueNamed(caCertPEM, caKeyPEM []byte, names []string, validity time.Duration, usage ...x509.ExtKeyUsage) (certPEM, keyPEM []byte, err error) {
	if len(names) == 0 {
		return nil, nil, errors.New("pki: issue: no names")
	}
	return issue(caCertPEM, caKeyPEM, leafSpec{what: "issue", commonName: names[0], names: names, usage: usage}, validity)
}

// leafSpec is what differs between the leaf certificates issue signs.
type leafSpec struct {
	what       string             // the action in error messages: "issue", "issue peer certificate"
	commonName string             // the subject's common name (organization is always adit)
	names      []string           // IP SANs where they parse as IPs, else DNS SANs; blanks skipped
	uris       []*url.URL         // URI SANs
	usage      []x509.ExtKeyUsage // extended key usages
}

// issue signs an ECDSA P-256 leaf described by spec with the CA, valid from
// backdate ago for validity, with the digital signature key usage.
func issue(caCertPEM, caKeyPEM []byte, spec leafSpec, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity <= 0 {
		return nil, nil, fmt.Errorf("pki: %s: validity %v is not positive", spec.what, validity)
	}
	ca, err := parseCert(caCertPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %s: CA certificate: %w", spec.what, err)
	}
	caKey, err := parseKey(caKeyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %s: CA key: %w", spec.what, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: spec.commonName, Organization: []string{"adit"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  spec.usage,
		URIs:         spec.uris,
	}
	for _, n := range spec.names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %s: create certificate: %w", spec.what, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// LoadOrCreate returns the CA and edge certificate kept in dir, creating dir,
// the CA and the edge certificate as needed. An existing CA is always reused;
// the edge certificate is reissued when it is missing, unreadable, not signed
// by the CA, expires within RenewBefore, or lacks one of names or
// DefaultNames. created reports whether anything was written.
func LoadOrCreate(dir string, names []string) (b *Bundle, created bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("pki: %w", err)
	}
	caPath := filepath.Join(dir, CACertFile)
	caKeyPath := filepath.Join(dir, CAKeyFile)
	caPEM, errCert := os.ReadFile(caPath)
	caKeyPEM, errKey := os.ReadFile(caKeyPath)
	switch {
	case errCert == nil && errKey == nil:
		if _, err := tls.X509KeyPair(caPEM, caKeyPEM); err != nil {
			return nil, false, fmt.Errorf("pki: %s and %s: %w", caPath, caKeyPath, err)
		}
	case errors.Is(errCert, os.ErrNotExist) && errors.Is(errKey, os.ErrNotExist):
		caPEM, caKeyPEM, err = NewCA("adit edge CA")
		if err != nil {
			return nil, false, err
		}
		// Key first: a cert without its key is a state we refuse to guess about.
		if err := WriteFileAtomic(caKeyPath, caKeyPEM, 0o600); err != nil {
			return nil, false, err
		}
		if err := WriteFileAtomic(caPath, caPEM, 0o644); err != nil {
			return nil, false, err
		}
		created = true
	case errCert != nil && !errors.Is(errCert, os.ErrNotExist):
		return nil, false, fmt.Errorf("pki: %w", errCert)
	case errKey != nil && !errors.Is(errKey, os.ErrNotExist):
		return nil, false, fmt.Errorf("pki: %w", errKey)
	default:
		return nil, false, fmt.Errorf("pki: %s and %s must both exist or both be absent", caPath, caKeyPath)
	}

	want := mergeNames(names)
	certPath := filepath.Join(dir, CertFile)
	keyPath := filepath.Join(dir, KeyFile)
	certPEM, errCert := os.ReadFile(certPath)
	keyPEM, errKey := os.ReadFile(keyPath)
	if errCert == nil && errKey == nil && leafUsable(caPEM, certPEM, keyPEM, want, time.Now()) {
		return &Bundle{CACertPEM: caPEM, CertPEM: certPEM, KeyPEM: keyPEM}, created, nil
	}
	certPEM, keyPEM, err = IssueServerCert(caPEM, caKeyPEM, want, LeafValidity)
	if err != nil {
		return nil, false, err
	}
	if err := WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, false, err
	}
	if err := WriteFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, false, err
	}
	return &Bundle{CACertPEM: caPEM, CertPEM: certPEM, KeyPEM: keyPEM}, true, nil
}

// LoadFiles loads a certificate and key given by the operator (--tls-cert,
// --tls-key), naming the files in its error.
func LoadFiles(certFile, keyFile string) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: load %s and %s: %w", certFile, keyFile, err)
	}
	return c, nil
}

// WriteFileAtomic writes data to path through a temporary file in the same
// directory that is synced and renamed over path, so readers see the old or
// the new contents, never a part. The file ends with mode perm even if path
// already existed with another mode.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp makes the file 0600; set the final mode before any byte lands.
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: make the rename durable
		d.Close()
	}
	return nil
}

// mergeNames returns names followed by any of DefaultNames they lack, trimmed,
// without empties or duplicates.
func mergeNames(names []string) []string {
	var out []string
	for _, n := range append(slices.Clone(names), DefaultNames...) {
		n = strings.TrimSpace(n)
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// leafUsable reports whether certPEM/keyPEM are a matching pair signed by
// caPEM, valid for longer than RenewBefore after now, and covering names.
func leafUsable(caPEM, certPEM, keyPEM []byte, names []string, now time.Time) bool {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil || len(pair.Certificate) == 0 {
		return false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return false
	}
	if now.Add(RenewBefore).After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return false
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return false
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now}); err != nil {
		return false
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(leaf.DNSNames, n) {
			return false
		}
	}
	return true
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("pki: serial: %w", err)
	}
	return s, nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseCert(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKey(keyPEM []byte) (any, error) {
	for rest := keyPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no private key PEM block")
		}
		switch block.Type {
		case "PRIVATE KEY":
			return x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			return x509.ParseECPrivateKey(block.Bytes)
		}
	}
}
