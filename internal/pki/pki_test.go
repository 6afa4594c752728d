package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func leafOf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	c, err := parseCert(certPEM)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return c
}

func TestNewCA(t *testing.T) {
	certPEM, keyPEM, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	c := leafOf(t, certPEM)
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Errorf("IsCA = %v, BasicConstraintsValid = %v; want true, true", c.IsCA, c.BasicConstraintsValid)
	}
	if c.Subject.CommonName != "test CA" {
		t.Errorf("CommonName = %q, want %q", c.Subject.CommonName, "test CA")
	}
	if got, want := time.Until(c.NotAfter), CAValidity-time.Hour; got < want {
		t.Errorf("validity left = %v, want at least %v", got, want)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key = %T, want ECDSA P-256", c.PublicKey)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Errorf("key does not match certificate: %v", err)
	}
}

func TestIssueServerCert(t *testing.T) {
	caPEM, caKeyPEM, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"edge.example.com", "10.1.2.3", "localhost", "::1"}
	certPEM, keyPEM, err := IssueServerCert(caPEM, caKeyPEM, names, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := leafOf(t, certPEM)
	if got, want := c.DNSNames, []string{"edge.example.com", "localhost"}; !slices.Equal(got, want) {
		t.Errorf("DNSNames = %v, want %v", got, want)
	}
	if len(c.IPAddresses) != 2 || !c.IPAddresses[0].Equal(net.ParseIP("10.1.2.3")) || !c.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IPAddresses = %v, want [10.1.2.3 ::1]", c.IPAddresses)
	}
	b := &Bundle{CACertPEM: caPEM, CertPEM: certPEM, KeyPEM: keyPEM}
	if _, err := c.Verify(x509.VerifyOptions{Roots: b.CAPool(), DNSName: "edge.example.com"}); err != nil {
		t.Errorf("verify against CA: %v", err)
	}
	if _, err := b.TLSCertificate(); err != nil {
		t.Errorf("TLSCertificate: %v", err)
	}

	for _, tc := range []struct {
		name     string
		ca, key  []byte
		names    []string
		validity time.Duration
	}{
		{"no names", caPEM, caKeyPEM, nil, time.Hour},
		{"zero validity", caPEM, caKeyPEM, names, 0},
		{"garbage CA", []byte("nope"), caKeyPEM, names, time.Hour},
		{"garbage key", caPEM, []byte("nope"), names, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := IssueServerCert(tc.ca, tc.key, tc.names, tc.validity); err == nil {
				t.Error("got nil error, want one")
			}
		})
	}
}

// TestTLSHandshake checks a client trusting only the CA completes a TLS 1.3
// handshake with the issued certificate.
func TestTLSHandshake(t *testing.T) {
	b, _, err := LoadOrCreate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := b.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			err = c.(*tls.Conn).Handshake()
			c.Close()
		}
		done <- err
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: b.CAPool(), MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	b1, created, err := LoadOrCreate(dir, []string{"edge.test"})
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Error("first call: created = false, want true")
	}
	for _, f := range []string{CAKeyFile, KeyFile} {
		if got := mode(t, filepath.Join(dir, f)); got != 0o600 {
			t.Errorf("%s mode = %v, want 0600", f, got)
		}
	}
	leaf := leafOf(t, b1.CertPEM)
	for _, n := range []string{"edge.test", "localhost"} {
		if err := leaf.VerifyHostname(n); err != nil {
			t.Errorf("leaf does not cover %s: %v", n, err)
		}
	}
	for _, n := range []string{"127.0.0.1", "::1"} {
		if err := leaf.VerifyHostname(n); err != nil {
			t.Errorf("leaf does not cover %s: %v", n, err)
		}
	}

	t.Run("reuse", func(t *testing.T) {
		b2, created, err := LoadOrCreate(dir, []string{"edge.test"})
		if err != nil {
			t.Fatal(err)
		}
		if created {
			t.Error("created = true, want false")
		}
		if !bytes.Equal(b2.CertPEM, b1.CertPEM) || !bytes.Equal(b2.CACertPEM, b1.CACertPEM) {
			t.Error("certificates changed, want the same")
		}
	})

	t.Run("new name reissues leaf, keeps CA", func(t *testing.T) {
		b3, created, err := LoadOrCreate(dir, []string{"edge.test", "other.test"})
		if err != nil {
			t.Fatal(err)
		}
		if !created {
			t.Error("created = false, want true")
		}
		if !bytes.Equal(b3.CACertPEM, b1.CACertPEM) {
			t.Error("CA changed, want the same")
		}
		if err := leafOf(t, b3.CertPEM).VerifyHostname("other.test"); err != nil {
			t.Errorf("reissued leaf lacks other.test: %v", err)
		}
	})

	t.Run("missing leaf reissued", func(t *testing.T) {
		os.Remove(filepath.Join(dir, CertFile))
		_, created, err := LoadOrCreate(dir, []string{"edge.test"})
		if err != nil {
			t.Fatal(err)
		}
		if !created {
			t.Error("created = false, want true")
		}
	})

	t.Run("expiring leaf reissued", func(t *testing.T) {
		caPEM, _ := os.ReadFile(filepath.Join(dir, CACertFile))
		caKey, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
		cert, key, err := IssueServerCert(caPEM, caKey, mergeNames([]string{"edge.test"}), 10*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		WriteFileAtomic(filepath.Join(dir, CertFile), cert, 0o644)
		WriteFileAtomic(filepath.Join(dir, KeyFile), key, 0o600)
		b, created, err := LoadOrCreate(dir, []string{"edge.test"})
		if err != nil {
			t.Fatal(err)
		}
		if !created || bytes.Equal(b.CertPEM, cert) {
			t.Error("leaf expiring in 10 days was kept, want it reissued")
		}
	})

	t.Run("CA without key is an error", func(t *testing.T) {
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, CACertFile), b1.CACertPEM, 0o644)
		if _, _, err := LoadOrCreate(d, nil); err == nil {
			t.Error("got nil error, want one")
		}
	})
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := LoadOrCreate(dir, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFiles(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)); err != nil {
		t.Errorf("LoadFiles: %v", err)
	}
	if _, err := LoadFiles(filepath.Join(dir, "missing.pem"), filepath.Join(dir, KeyFile)); err == nil {
		t.Error("missing file: got nil error, want one")
	}
}

func TestWriteFileAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if string(got) != "new" {
		t.Errorf("contents = %q, want %q", got, "new")
	}
	if m := mode(t, path); m != 0o600 {
		t.Errorf("mode = %v, want 0600", m)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory has %d entries, want 1 (no temp files left)", len(entries))
	}
	if err := WriteFileAtomic(filepath.Join(t.TempDir(), "no", "such", "dir"), nil, 0o600); err == nil {
		t.Error("missing directory: got nil error, want one")
	}
}

// FuzzParseKey feeds arbitrary PEM to the key parser: it must not panic, and
// a key it accepts must sign certificates.
func FuzzParseKey(f *testing.F) {
	_, caKey, err := NewCA("fuzz")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(caKey)
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
	f.Add([]byte("junk"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := parseKey(data)
		if err != nil {
			return
		}
		if k == nil {
			t.Fatal("parseKey returned nil key and nil error")
		}
	})
}
