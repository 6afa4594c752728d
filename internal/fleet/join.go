package fleet

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
)

// JoinPath is the API path a joining edge posts its JoinRequest to.
const JoinPath = "/v1/fleet/join"

// maxJoinResponse bounds the answer a joining edge reads.
const maxJoinResponse = 1 << 20

// Join asks the edge whose API is at apiURL (https://host:port) to add
// this edge, as req describes it, to the fleet's etcd cluster, with the
// join token tok. The token's secret is sent only to an API whose
// certificate chains to the CA the token pins (that edge sends its CA in
// its chain), else to one the system roots trust; the answer's CA must be
// the pinned one too. Every field of the answer is checked.
func Join(ctx context.Context, apiURL string, tok Token, req control.JoinRequest) (control.JoinResponse, error) {
	u, err := url.Parse(apiURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" {
		return control.JoinResponse{}, fmt.Errorf("join: %q: want the API URL of an edge of the fleet, https://host:port", apiURL)
	}
	host := u.Hostname()
	tlsConf := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verified below, against the pinned CA
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPinned(cs.PeerCertificates, host, tok.CAHash)
		},
	}
	tr := &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true, Proxy: http.ProxyFromEnvironment}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+u.Host+JoinPath, bytes.NewReader(body))
	if err != nil {
		return control.JoinResponse{}, fmt.Errorf("join: %w", err)
	}
	hreq.Header.Set("Authorization", "Bearer "+tok.String())
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(hreq)
	if err != nil {
		return control.JoinResponse{}, fmt.Errorf("join: the edge at %s: %w", u.Host, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJoinResponse+1))
	if err != nil {
		return control.JoinResponse{}, fmt.Errorf("join: the edge at %s: %w", u.Host, err)
	}
	if len(data) > maxJoinResponse {
		return control.JoinResponse{}, fmt.Errorf("join: the edge at %s answered more than %d bytes", u.Host, maxJoinResponse)
	}
	if resp.StatusCode != http.StatusOK {
		var eb control.ErrorBody
		msg := resp.Status
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			msg = eb.Error
		}
		return control.JoinResponse{}, fmt.Errorf("join: the edge at %s refused: %s", u.Host, msg)
	}
	var jr control.JoinResponse
	if err := json.Unmarshal(data, &jr); err != nil {
		return control.JoinResponse{}, fmt.Errorf("join: the edge at %s answered: %w", u.Host, err)
	}
	if err := CheckJoinResponse(jr, tok, req); err != nil {
		return control.JoinResponse{}, fmt.Errorf("join: the edge at %s answered: %w", u.Host, err)
	}
	return jr, nil
}

// verifyPinned checks a server's chain: its leaf must be valid for host
// and chain to a CA in it whose key has the pinned hash, or else to the
// system roots.
func verifyPinned(certs []*x509.Certificate, host, pin string) error {
	if len(certs) == 0 {
		return errors.New("the edge sent no certificate")
	}
	inter := x509.NewCertPool()
	var pinned *x509.Certificate
	for _, c := range certs[1:] {
		inter.AddCert(c)
		if c.IsCA && certHash(c) == pin {
			pinned = c
		}
	}
	opts := x509.VerifyOptions{DNSName: host, Intermediates: inter}
	if pinned != nil {
		opts.Roots = x509.NewCertPool()
		opts.Roots.AddCert(pinned)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		if pinned == nil {
			return fmt.Errorf("the edge's certificate does not chain to the CA the join token pins (sha256 %s…), nor to a trusted root: %w", pin[:12], err)
		}
		return fmt.Errorf("the edge's certificate: %w", err)
	}
	return nil
}

// CheckJoinResponse checks an answer to req: an initial cluster that
// names the new member at its peer URL and only well-formed members, and
// the pinned CA with its key.
func CheckJoinResponse(jr control.JoinResponse, tok Token, req control.JoinRequest) error {
	if len(jr.InitialCluster) > 64<<10 {
		return errors.New("initial cluster: too long")
	}
	self := false
	names := map[string]bool{}
	for _, part := range strings.Split(jr.InitialCluster, ",") {
		name, peerURL, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("initial cluster: %q is not name=url", part)
		}
		if err := store.CheckMemberName(name); err != nil {
			return fmt.Errorf("initial cluster: %w", err)
		}
		if err := store.CheckPeerURL(peerURL); err != nil {
			return fmt.Errorf("initial cluster: %w", err)
		}
		if name == req.Name {
			if peerURL != req.PeerURL {
				return fmt.Errorf("initial cluster: names %s at %s, not %s", name, peerURL, req.PeerURL)
			}
			self = true
		}
		names[name] = true
	}
	if !self {
		return fmt.Errorf("initial cluster: %s is not in it", req.Name)
	}
	if len(names) < 2 {
		return errors.New("initial cluster: no member but the new one")
	}
	hash, err := CAHash([]byte(jr.CACertPEM))
	if err != nil {
		return err
	}
	if hash != tok.CAHash {
		return errors.New("the CA is not the one the join token pins")
	}
	pair, err := tls.X509KeyPair([]byte(jr.CACertPEM), []byte(jr.CAKeyPEM))
	if err != nil {
		return fmt.Errorf("the CA's key: %w", err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || !ca.IsCA {
		return errors.New("the CA certificate is not a CA")
	}
	return nil
}

// CheckJoinRequest checks what a joining edge sends, naming the field.
func CheckJoinRequest(req control.JoinRequest) error {
	if err := store.CheckMemberName(req.Name); err != nil {
		return control.Errorf(control.ErrInvalid, "name: %v", err)
	}
	if err := store.CheckPeerURL(req.PeerURL); err != nil {
		return control.Errorf(control.ErrInvalid, "peer_url: %v", err)
	}
	if len(req.Version) > 128 {
		return control.Errorf(control.ErrInvalid, "version: %d bytes, the limit is 128", len(req.Version))
	}
	for _, r := range req.Version {
		if r < 0x21 || r > 0x7e {
			return control.Errorf(control.ErrInvalid, "version: %q is not printable ASCII", r)
		}
	}
	return nil
}
