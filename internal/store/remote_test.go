package store

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/adit-dev/adit/internal/pki"
)

// tlsEtcd is a real etcd server on 127.0.0.1 that serves only TLS and
// requires a client certificate signed by its CA (etcd's
// --client-cert-auth), with the files a client needs.
type tlsEtcd struct {
	endpoint                  string // https://127.0.0.1:port
	caFile, certFile, keyFile string // a client certificate the server accepts
	otherCert, otherKey       string // a client certificate from another CA
	otherCAFile               string // that other CA
}

func startTLSEtcd(t *testing.T) *tlsEtcd {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caPEM, caKey, err := pki.NewCA("etcd test CA")
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := pki.IssueServerCert(caPEM, caKey, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey := issueClientCert(t, caPEM, caKey, "root")
	otherCA, otherCAKey, err := pki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	otherCert, otherKey := issueClientCert(t, otherCA, otherCAKey, "root")
	e := &tlsEtcd{
		caFile: write("ca.pem", caPEM), certFile: write("client.pem", cliCert), keyFile: write("client.key", cliKey),
		otherCert: write("other.pem", otherCert), otherKey: write("other.key", otherKey),
		otherCAFile: write("other-ca.pem", otherCA),
	}

	ec := embed.NewConfig()
	ec.Name = "tls-test"
	ec.Dir = filepath.Join(dir, "etcd")
	u := url.URL{Scheme: "https", Host: "127.0.0.1:0"}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{u}, []url.URL{u}
	ec.ListenPeerUrls = nil
	ec.AdvertisePeerUrls = []url.URL{{Scheme: "http", Host: "127.0.0.1:0"}}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.TickMs, ec.ElectionMs = 10, 100
	ec.LogLevel = "error"
	ec.ClientTLSInfo.CertFile = write("server.pem", srvCert)
	ec.ClientTLSInfo.KeyFile = write("server.key", srvKey)
	ec.ClientTLSInfo.TrustedCAFile = e.caFile
	ec.ClientTLSInfo.ClientCertAuth = true
	srv, err := embed.StartEtcd(ec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	select {
	case <-srv.Server.ReadyNotify():
	case err := <-srv.Err():
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("the TLS etcd did not become ready")
	}
	e.endpoint = "https://" + srv.Clients[0].Addr().String()
	return e
}

// issueClientCert issues a client certificate (ExtKeyUsageClientAuth) for
// commonName, which etcd takes as the user name.
func issueClientCert(t *testing.T, caPEM, caKeyPEM []byte, commonName string) (certPEM, keyPEM []byte) {
	t.Helper()
	caBlock, _ := pem.Decode(caPEM)
	ca, err := x509.ParseCertificate(caBlock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	keyBlock, _ := pem.Decode(caKeyPEM)
	caKey, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	if err != nil {
		caKey, err = x509.ParseECPrivateKey(keyBlock.Bytes)
	}
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
}

// TestRemoteTLS: an external etcd over TLS with client certificates works
// with the right CA and certificate, and is refused without them.
func TestRemoteTLS(t *testing.T) {
	e := startTLSEtcd(t)
	ok := Remote{CAFile: e.caFile, CertFile: e.certFile, KeyFile: e.keyFile}
	s := openT(t, Config{Endpoints: []string{e.endpoint}, Remote: ok})
	if _, err := s.Client().Put(t.Context(), "/adit/x", "over tls"); err != nil {
		t.Fatalf("Put over TLS: %v", err)
	}
	s.Close()

	for _, tc := range []struct {
		name   string
		remote Remote
	}{
		{"no client certificate", Remote{CAFile: e.caFile}},
		{"a client certificate from another CA", Remote{CAFile: e.caFile, CertFile: e.otherCert, KeyFile: e.otherKey}},
		{"the system roots do not know the server", Remote{CertFile: e.certFile, KeyFile: e.keyFile}},
		{"the wrong CA", Remote{CAFile: e.otherCAFile, CertFile: e.certFile, KeyFile: e.keyFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.Context(), Config{Endpoints: []string{e.endpoint}, Remote: tc.remote, DialTimeout: time.Second})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded, want a refusal")
			}
			if !strings.Contains(err.Error(), "unreachable") {
				t.Errorf("Open: %v, want it to say etcd is unreachable", err)
			}
		})
	}
}

// TestRemotePassword: etcd's user/password auth over TLS.
func TestRemotePassword(t *testing.T) {
	e := startTLSEtcd(t)
	remote := Remote{CAFile: e.caFile, CertFile: e.certFile, KeyFile: e.keyFile}
	admin := openT(t, Config{Endpoints: []string{e.endpoint}, Remote: remote})
	ctx := t.Context()
	for _, step := range []func() error{
		func() error { _, err := admin.Client().RoleAdd(ctx, "root"); return err },
		func() error { _, err := admin.Client().UserAdd(ctx, "root", "root-password"); return err },
		func() error { _, err := admin.Client().UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.Client().UserAdd(ctx, "adit", "s3cret"); return err },
		func() error { _, err := admin.Client().RoleAdd(ctx, "adit"); return err },
		func() error {
			_, err := admin.Client().RoleGrantPermission(ctx, "adit", Prefix, clientv3.GetPrefixRangeEnd(Prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := admin.Client().UserGrantRole(ctx, "adit", "adit"); return err },
		func() error { _, err := admin.Client().AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("setting up etcd auth: %v", err)
		}
	}
	admin.Close()

	pw := remote
	pw.Username, pw.Password = "adit", "s3cret"
	s := openT(t, Config{Endpoints: []string{e.endpoint}, Remote: pw})
	if _, err := s.Client().Put(ctx, "/adit/y", "with a password"); err != nil {
		t.Errorf("Put as adit: %v", err)
	}
	if _, err := s.Client().Put(ctx, "/elsewhere", "x"); err == nil {
		t.Error("Put outside /adit/ as adit succeeded, want permission denied (the user's role is in force)")
	}
	s.Close()

	bad := remote
	bad.Username, bad.Password = "adit", "wrong"
	if s, err := Open(ctx, Config{Endpoints: []string{e.endpoint}, Remote: bad, DialTimeout: time.Second}); err == nil {
		s.Close()
		t.Error("Open with a wrong password succeeded")
	}
}

func TestRemoteEndpointChecks(t *testing.T) {
	for _, tc := range []struct {
		name      string
		endpoints []string
		remote    Remote
		want      string // "" for accepted
		plaintext bool
	}{
		{"https", []string{"https://10.0.0.1:2379"}, Remote{}, "", false},
		{"http loopback", []string{"http://127.0.0.1:2379", "http://localhost:2379", "http://[::1]:2379"}, Remote{}, "", false},
		{"unix socket", []string{"unix:///run/etcd.sock"}, Remote{}, "", false},
		{"http elsewhere", []string{"http://10.0.0.1:2379"}, Remote{}, "in clear", true},
		{"http elsewhere, allowed", []string{"http://10.0.0.1:2379"}, Remote{Insecure: true}, "", false},
		{"bare host:port", []string{"10.0.0.1:2379"}, Remote{}, "want https://host:port", false},
		{"other scheme", []string{"ftp://10.0.0.1"}, Remote{}, `scheme "ftp"`, false},
		{"mixed", []string{"https://10.0.0.1:2379", "http://127.0.0.1:2379"}, Remote{}, "mix", false},
		{"CA with http", []string{"http://127.0.0.1:2379"}, Remote{CAFile: "ca.pem"}, "not https", false},
		{"cert without key", []string{"https://10.0.0.1:2379"}, Remote{CertFile: "c.pem"}, "both", false},
		{"missing CA file", []string{"https://10.0.0.1:2379"}, Remote{CAFile: filepath.Join(t.TempDir(), "nope.pem")}, "etcd CA", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.remote.clientTLS(tc.endpoints, nil)
			if tc.want == "" {
				if err != nil {
					t.Errorf("clientTLS = %v, want it accepted", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("clientTLS = %v, want an error containing %q", err, tc.want)
			}
			if errors.Is(err, ErrPlaintextEndpoint) != tc.plaintext {
				t.Errorf("errors.Is(%v, ErrPlaintextEndpoint) = %v, want %v", err, !tc.plaintext, tc.plaintext)
			}
		})
	}
}
