package publictls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// selfSigned is a certificate for names, valid from nb to na, and its key.
func selfSigned(t testing.TB, nb, na time.Time, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: nb, NotAfter: na}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

func TestParseManual(t *testing.T) {
	now := time.Now()
	good, goodKey := selfSigned(t, now.Add(-time.Hour), now.Add(time.Hour), "app.test", "*.wild.test")
	old, oldKey := selfSigned(t, now.Add(-2*time.Hour), now.Add(-time.Hour), "app.test")
	_, otherKey := selfSigned(t, now.Add(-time.Hour), now.Add(time.Hour), "app.test")
	tests := []struct {
		name, host string
		cert, key  []byte
		wantErr    string
	}{
		{"exact name", "app.test", good, goodKey, ""},
		{"wildcard named exactly", "*.wild.test", good, goodKey, ""},
		{"a name under the wildcard", "a.wild.test", good, goodKey, ""},
		{"a wildcard the certificate does not name", "*.app.test", good, goodKey, "names [app.test *.wild.test], not *.app.test"},
		{"another name", "other.test", good, goodKey, "does not cover other.test"},
		{"expired", "app.test", old, oldKey, "expired on"},
		{"key of another certificate", "app.test", good, otherKey, "certificate and key"},
		{"no PEM", "app.test", []byte("junk"), []byte("junk"), "certificate and key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseManual(tt.host, tt.cert, tt.key, now)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("got %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

// FuzzParseManual: whatever bytes an operator sends, parseManual accepts
// only a certificate that covers the hostname and has its key.
func FuzzParseManual(f *testing.F) {
	now := time.Now()
	c, k := selfSigned(f, now.Add(-time.Hour), now.Add(time.Hour), "app.test")
	f.Add("app.test", c, k)
	f.Add("*.app.test", c, k)
	f.Add("app.test", c[:len(c)/2], k)
	f.Fuzz(func(t *testing.T, host string, certPEM, keyPEM []byte) {
		cert, err := parseManual(host, certPEM, keyPEM, now)
		if err != nil {
			return
		}
		if cert.Leaf == nil {
			t.Fatal("accepted without a parsed leaf")
		}
		if strings.HasPrefix(host, "*.") {
			for _, n := range cert.Leaf.DNSNames {
				if strings.EqualFold(n, host) {
					return
				}
			}
			t.Fatalf("accepted for %q a certificate naming %v", host, cert.Leaf.DNSNames)
		}
		if err := cert.Leaf.VerifyHostname(host); err != nil {
			t.Fatalf("accepted for %q a certificate that does not cover it: %v", host, err)
		}
	})
}
