package control

import (
	"context"
	"net/http"
	"time"
)

// Certificate sources.
const (
	CertSourceACME   = "acme"   // ordered by the edge from its ACME CA
	CertSourceManual = "manual" // brought by an operator (adit cert add)
)

// Certificate is a certificate the edge's public HTTPS listener serves, or
// one it tried to get.
type Certificate struct {
	Hostname  string    `json:"hostname"`             // as routed, or "*.example.com"
	Source    string    `json:"source"`               // CertSourceACME or CertSourceManual
	Names     []string  `json:"names,omitempty"`      // the certificate's DNS names
	Issuer    string    `json:"issuer,omitempty"`     // the issuing CA's common name
	NotBefore time.Time `json:"not_before,omitzero"`  //
	NotAfter  time.Time `json:"not_after,omitzero"`   //
	LastError string    `json:"last_error,omitempty"` // the last failed order or renewal, if it has not succeeded since
	ErrorAt   time.Time `json:"error_at,omitzero"`    // when LastError happened
}

// AddCertificateRequest is a certificate an operator brings: PEM, the
// chain after the leaf, and its private key.
type AddCertificateRequest struct {
	CertPEM string `json:"cert_pem"`
	KeyPEM  string `json:"key_pem"`
}

// ListCertificates lists the certificates of the public HTTPS listener.
func (c *Client) ListCertificates(ctx context.Context) ([]Certificate, error) {
	var cs []Certificate
	err := c.do(ctx, http.MethodGet, "/v1/certificates", nil, nil, &cs)
	return cs, err
}

// AddCertificate stores a certificate an operator brings for hostname
// (a wildcard "*.example.com" too); it replaces an ACME one for its names.
func (c *Client) AddCertificate(ctx context.Context, hostname string, req AddCertificateRequest) (Certificate, error) {
	seg, err := pathSegment("hostname", hostname)
	if err != nil {
		return Certificate{}, err
	}
	var cert Certificate
	err = c.do(ctx, http.MethodPut, "/v1/certificates/"+seg, nil, req, &cert)
	return cert, err
}

// DeleteCertificate deletes hostname's certificate: a brought one, or the
// ACME one (which the edge orders again while the hostname is routed).
func (c *Client) DeleteCertificate(ctx context.Context, hostname string) error {
	seg, err := pathSegment("hostname", hostname)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, "/v1/certificates/"+seg, nil, nil, nil)
}
