package publictls

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
)

// Endpoints are the certificate API's endpoints (docs/openapi.yaml),
// served by the edge beside the control API.
func (m *Manager) Endpoints() []controlserver.Endpoint {
	return []controlserver.Endpoint{
		{Pattern: "GET /v1/certificates", Handle: m.handleList},
		{Pattern: "PUT /v1/certificates/{hostname}", Handle: m.handleAdd},
		{Pattern: "DELETE /v1/certificates/{hostname}", Handle: m.handleDelete},
	}
}

func (m *Manager) handleList(w http.ResponseWriter, r *http.Request) error {
	certs, err := m.List(r.Context())
	if err != nil {
		return err
	}
	controlserver.WriteJSON(w, http.StatusOK, certs)
	return nil
}

func (m *Manager) handleAdd(w http.ResponseWriter, r *http.Request) error {
	host, err := control.ValidateHostname(r.PathValue("hostname"))
	if err != nil {
		return err
	}
	var req control.AddCertificateRequest
	if err := controlserver.DecodeJSON(w, r, &req); err != nil {
		return err
	}
	c, err := m.Add(r.Context(), host, req)
	if err != nil {
		return err
	}
	controlserver.WriteJSON(w, http.StatusOK, c)
	return nil
}

func (m *Manager) handleDelete(w http.ResponseWriter, r *http.Request) error {
	host, err := control.ValidateHostname(r.PathValue("hostname"))
	if err != nil {
		return err
	}
	if err := m.Delete(r.Context(), host); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Add stores a certificate an operator brings for host, after checking it
// (key, names, expiry). Every edge serves it within a second.
func (m *Manager) Add(ctx context.Context, host string, req control.AddCertificateRequest) (control.Certificate, error) {
	c, err := parseManual(host, []byte(req.CertPEM), []byte(req.KeyPEM), time.Now())
	if err != nil {
		return control.Certificate{}, err
	}
	b, _ := json.Marshal(manualRecord{CertPEM: req.CertPEM, KeyPEM: req.KeyPEM, AddedAt: time.Now().UTC()})
	if _, err := m.cli.Put(ctx, manualPrefix+host, string(b)); err != nil {
		return control.Certificate{}, err
	}
	m.log.Info("brought certificate stored", "host", host, "not_after", c.Leaf.NotAfter)
	return describe(host, control.CertSourceManual, c.Leaf), nil
}

// Delete removes host's brought certificate if it has one, else its ACME
// certificate (ordered again while host is routed).
func (m *Manager) Delete(ctx context.Context, host string) error {
	resp, err := m.cli.Delete(ctx, manualPrefix+host)
	if err != nil {
		return err
	}
	if resp.Deleted > 0 {
		return nil
	}
	found := false
	for _, issuer := range m.magic.Issuers {
		key := certmagic.StorageKeys.CertsSitePrefix(issuer.IssuerKey(), host)
		if m.storage.Exists(ctx, key) {
			found = true
			if err := m.storage.Delete(ctx, key); err != nil {
				return err
			}
		}
	}
	m.cli.Delete(ctx, statusPrefix+host)
	if !found {
		return control.Errorf(control.ErrNotFound, "no certificate for %s", host)
	}
	m.Unmanage(host)
	return nil
}

// List describes every certificate: brought ones, ACME ones from etcd,
// and hostnames whose order failed before any certificate.
func (m *Manager) List(ctx context.Context) ([]control.Certificate, error) {
	byHost := make(map[string]*control.Certificate)
	resp, err := m.cli.Get(ctx, manualPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	for _, kv := range resp.Kvs {
		host := strings.TrimPrefix(string(kv.Key), manualPrefix)
		var rec manualRecord
		c := control.Certificate{Hostname: host, Source: control.CertSourceManual}
		if json.Unmarshal(kv.Value, &rec) == nil {
			if leaf := firstCert([]byte(rec.CertPEM)); leaf != nil {
				c = describe(host, control.CertSourceManual, leaf)
			}
		}
		byHost[host] = &c
	}
	keys, err := m.storage.List(ctx, "certificates", true)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, k := range keys {
		if !strings.HasSuffix(k, ".crt") {
			continue
		}
		b, err := m.storage.Load(ctx, k)
		if err != nil {
			continue
		}
		leaf := firstCert(b)
		if leaf == nil || len(leaf.DNSNames) == 0 {
			continue
		}
		host := leaf.DNSNames[0]
		if _, ok := byHost[host]; ok {
			continue // the brought one serves
		}
		c := describe(host, control.CertSourceACME, leaf)
		byHost[host] = &c
	}
	st, err := m.cli.Get(ctx, statusPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	for _, kv := range st.Kvs {
		host := strings.TrimPrefix(string(kv.Key), statusPrefix)
		var s status
		if json.Unmarshal(kv.Value, &s) != nil {
			continue
		}
		c := byHost[host]
		if c == nil {
			c = &control.Certificate{Hostname: host, Source: control.CertSourceACME}
			byHost[host] = c
		}
		c.LastError, c.ErrorAt = s.Error, s.At
	}
	out := make([]control.Certificate, 0, len(byHost))
	for _, c := range byHost {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b control.Certificate) int { return strings.Compare(a.Hostname, b.Hostname) })
	return out, nil
}

func firstCert(pemBytes []byte) *x509.Certificate {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil
	}
	return c
}

func describe(host, source string, leaf *x509.Certificate) control.Certificate {
	return control.Certificate{
		Hostname:  host,
		Source:    source,
		Names:     leaf.DNSNames,
		Issuer:    leaf.Issuer.CommonName,
		NotBefore: leaf.NotBefore.UTC(),
		NotAfter:  leaf.NotAfter.UTC(),
	}
}
