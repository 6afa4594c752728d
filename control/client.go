package control

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
	"strconv"
	"strings"
	"time"
)

// Client implements API against an edge's /v1 HTTP API (controlserver.NewHandler).
type Client struct {
	BaseURL    string       // "https://edge.example.com:8443"; /v1/... is appended
	Token      string       // API token, sent as "Authorization: Bearer <token>"
	HTTPClient *http.Client // if nil, http.DefaultClient
}

var _ API = (*Client)(nil)

// NewClient returns a client for the API at baseURL (https only), with TLS 1.3
// at least. It trusts the CA certificates in caPEM if non-empty, else the
// system roots.
func NewClient(baseURL, token string, caPEM []byte) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("control: API URL %q: %w", baseURL, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("control: API URL %q: want https://host[:port]", baseURL)
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS13}
	if len(caPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("control: the edge CA has no PEM certificate")
		}
		tlsConf.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	tr.ForceAttemptHTTP2 = true
	return &Client{
		BaseURL:    strings.TrimSuffix(baseURL, "/"),
		Token:      token,
		HTTPClient: &http.Client{Transport: tr, Timeout: time.Minute},
	}, nil
}

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// do sends one API request: in (if not nil) as the JSON body, the JSON answer
// decoded into out (if not nil). Error answers become errors wrapping the
// sentinel of their code, with the server's message.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("control: %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	u := c.BaseURL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("control: %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("control: API at %s unreachable: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode/100 != 2 {
		return responseError(resp)
	}
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("control: %s %s: bad response: %w", method, path, err)
	}
	return nil
}

// responseError turns an error answer into an error: the sentinel of its code
// (or, failing a JSON body, of its status) with the server's message.
func responseError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var eb ErrorBody
	if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
		eb = ErrorBody{Error: fmt.Sprintf("%s %s: unexpected answer %s", resp.Request.Method, resp.Request.URL.Path, resp.Status)}
		if s := strings.TrimSpace(string(data)); s != "" && len(s) < 200 {
			eb.Error += ": " + s
		}
	}
	for _, c := range errorCodes {
		if c.code == eb.Code || eb.Code == "" && c.status == resp.StatusCode {
			return &kindError{kind: c.err, msg: "control: " + eb.Error}
		}
	}
	return errors.New("control: " + eb.Error)
}

// pathSegment escapes one path segment; an empty one is refused before it turns
// the request into another endpoint.
func pathSegment(what, s string) (string, error) {
	switch s {
	case "":
		return "", Errorf(ErrInvalid, "no %s given", what)
	case ".", "..":
		return "", Errorf(ErrInvalid, "%q is not a valid %s", s, what)
	}
	return url.PathEscape(s), nil
}

// CreateTunnel implements API.
func (c *Client) CreateTunnel(ctx context.Context, name string, secret []byte) (Tunnel, error) {
	var t Tunnel
	err := c.do(ctx, http.MethodPost, "/v1/tunnels", nil, CreateTunnelRequest{Name: name, TunnelSecret: secret}, &t)
	return t, err
}

// ListTunnels implements API.
func (c *Client) ListTunnels(ctx context.Context, opts ListOptions) ([]Tunnel, error) {
	q := url.Values{}
	if opts.Name != "" {
		q.Set("name", opts.Name)
	}
	if opts.IncludeDeleted {
		q.Set("include_deleted", "true")
	}
	var ts []Tunnel
	err := c.do(ctx, http.MethodGet, "/v1/tunnels", q, nil, &ts)
	return ts, err
}

// GetTunnel implements API; the server resolves names.
func (c *Client) GetTunnel(ctx context.Context, idOrName string) (Tunnel, error) {
	seg, err := pathSegment("tunnel ID or name", idOrName)
	if err != nil {
		return Tunnel{}, err
	}
	var t Tunnel
	err = c.do(ctx, http.MethodGet, "/v1/tunnels/"+seg, nil, nil, &t)
	return t, err
}

// DeleteTunnel implements API.
func (c *Client) DeleteTunnel(ctx context.Context, id string, force bool) error {
	seg, err := pathSegment("tunnel ID", id)
	if err != nil {
		return err
	}
	var q url.Values
	if force {
		q = url.Values{"force": {strconv.FormatBool(force)}}
	}
	return c.do(ctx, http.MethodDelete, "/v1/tunnels/"+seg, q, nil, nil)
}

// CleanupTunnel implements API.
func (c *Client) CleanupTunnel(ctx context.Context, id string) error {
	seg, err := pathSegment("tunnel ID", id)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, "/v1/tunnels/"+seg+"/connections", nil, nil, nil)
}

// RouteDNS implements API.
func (c *Client) RouteDNS(ctx context.Context, tunnelID, hostname string, overwrite bool) (Route, error) {
	seg, err := pathSegment("hostname", hostname)
	if err != nil {
		return Route{}, err
	}
	var r Route
	err = c.do(ctx, http.MethodPut, "/v1/routes/"+seg, nil, RouteRequest{TunnelID: tunnelID, Overwrite: overwrite}, &r)
	return r, err
}

// ListRoutes implements API.
func (c *Client) ListRoutes(ctx context.Context) ([]Route, error) {
	var rs []Route
	err := c.do(ctx, http.MethodGet, "/v1/routes", nil, nil, &rs)
	return rs, err
}

// DeleteRoute implements API.
func (c *Client) DeleteRoute(ctx context.Context, hostname string) error {
	seg, err := pathSegment("hostname", hostname)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, "/v1/routes/"+seg, nil, nil, nil)
}

// EdgeInfo implements API.
func (c *Client) EdgeInfo(ctx context.Context) (EdgeInfo, error) {
	var info EdgeInfo
	err := c.do(ctx, http.MethodGet, "/v1/edge", nil, nil, &info)
	return info, err
}
