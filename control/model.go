package control

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Tunnel is a named tunnel. Connectors prove they may serve it with its secret.
type Tunnel struct {
	ID          string       `json:"id"` // UUID v4
	Name        string       `json:"name"`
	SecretHash  []byte       `json:"-"` // sha256 of the tunnel secret; never leaves the server
	CreatedAt   time.Time    `json:"created_at"`
	DeletedAt   *time.Time   `json:"deleted_at,omitempty"`
	Connections []Connection `json:"connections,omitempty"` // live connections, filled by Get/List
}

// Connection is one live connection from a connector to an edge.
type Connection struct {
	ID          string    `json:"id"`           // edge-assigned UUID
	TunnelID    string    `json:"tunnel_id"`    //
	ConnectorID string    `json:"connector_id"` // UUID the connector process picked at start
	Index       int       `json:"index"`        // HA connection index 0..N-1
	EdgeNode    string    `json:"edge_node"`    //
	Protocol    string    `json:"protocol"`     // "quic" or "websocket"
	Version     string    `json:"version"`      // connector version
	OriginIP    string    `json:"origin_ip"`    // connector's address as the edge saw it
	Since       time.Time `json:"since"`        //

	// The tunnel's remote configuration on this connection, as the connector
	// last reported it (tunnelconfig.go). Zero: not reported.
	ConfigVersion       int64  `json:"config_version,omitempty"`        // the version in effect
	ConfigFailedVersion int64  `json:"config_failed_version,omitempty"` // a newer one it could not apply
	ConfigError         string `json:"config_error,omitempty"`          // why
	ConfigLocal         bool   `json:"config_local,omitempty"`          // it runs a local config file instead
}

// Route sends requests for a hostname to a tunnel.
type Route struct {
	Hostname  string    `json:"hostname"` // lower-case; exact "app.example.com" or wildcard "*.example.com"
	TunnelID  string    `json:"tunnel_id"`
	CreatedAt time.Time `json:"created_at"`
}

// EdgeInfo tells connectors and API clients how to reach the edge.
type EdgeInfo struct {
	Node        string   `json:"node"`
	TunnelAddrs []string `json:"tunnel_addrs"` // host:port connectors dial: this edge's, then every other live edge's
	CAPEM       string   `json:"ca_pem"`       // CA that signed the edge's tunnel/API certificate
}

// ListOptions filter ListTunnels.
type ListOptions struct {
	Name           string // if set, only tunnels with exactly this name
	IncludeDeleted bool   // if set, deleted tunnels too
}

// API is implemented by *controlserver.Service (in-process, over etcd) and by *Client (HTTPS to the edge's /v1 API).
type API interface {
	// CreateTunnel creates a tunnel; secret (>= 32 bytes) is stored as its sha256.
	CreateTunnel(ctx context.Context, name string, secret []byte) (Tunnel, error)
	ListTunnels(ctx context.Context, opts ListOptions) ([]Tunnel, error)
	// GetTunnel finds a tunnel by UUID, or else a live tunnel by name.
	GetTunnel(ctx context.Context, idOrName string) (Tunnel, error)
	// DeleteTunnel soft-deletes a tunnel: ErrTunnelConnected if it has live connections and !force.
	DeleteTunnel(ctx context.Context, id string, force bool) error
	// CleanupTunnel drops the tunnel's connection records (edges then disconnect them).
	CleanupTunnel(ctx context.Context, id string) error
	// RouteDNS routes hostname to a tunnel: ErrConflict if it is routed to another tunnel and !overwrite.
	RouteDNS(ctx context.Context, tunnelID, hostname string, overwrite bool) (Route, error)
	ListRoutes(ctx context.Context) ([]Route, error)
	DeleteRoute(ctx context.Context, hostname string) error
	// RouteTCP makes every edge listen on a public TCP port and carry its connections to a tunnel,
	// with hostname as the host its connector matches ingress rules with (empty: the catch-all).
	// ErrConflict if the port is routed differently and !overwrite.
	RouteTCP(ctx context.Context, tunnelID string, port int, hostname string, overwrite bool) (TCPRoute, error)
	ListTCPRoutes(ctx context.Context) ([]TCPRoute, error)
	DeleteTCPRoute(ctx context.Context, port int) error
	// EdgeInfo tells connectors how to reach the fleet: the tunnel addresses of every live edge, this one first.
	EdgeInfo(ctx context.Context) (EdgeInfo, error)
	// ListEdges lists the live edges of the fleet by name (their records in etcd, fleet.go).
	ListEdges(ctx context.Context) ([]EdgeNode, error)
	// DrainEdge asks the live edge named name to drain and leave: ErrNotFound if there is none.
	DrainEdge(ctx context.Context, name string) (EdgeNode, error)
}

// Errors of both API implementations; test with errors.Is.
var (
	ErrNotFound        = errors.New("control: not found")
	ErrConflict        = errors.New("control: conflict")
	ErrTunnelConnected = errors.New("control: tunnel has live connections")
	ErrUnauthorized    = errors.New("control: unauthorized")
	ErrInvalid         = errors.New("control: invalid request")
)

// errorCodes maps the sentinel errors to the API's error codes and HTTP statuses.
var errorCodes = []struct {
	err    error
	code   string
	status int
}{
	{ErrNotFound, "not_found", 404},
	{ErrConflict, "conflict", 409},
	{ErrTunnelConnected, "tunnel_connected", 409},
	{ErrUnauthorized, "unauthorized", 401},
	{ErrInvalid, "invalid", 400},
}

// kindError is an error the API reports to its caller: a message a person can
// act on, and one of the sentinel errors as its kind.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

// Errorf returns an error of kind, one of the sentinel errors above
// (errors.Is(err, kind) holds), whose message is "control: " and the
// formatted text: what API implementations fail with.
func Errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: "control: " + fmt.Sprintf(format, args...)}
}

// MinSecretLen is the shortest tunnel secret CreateTunnel accepts.
const MinSecretLen = 32

// HashSecret is how tunnel secrets are stored: their sha256.
func HashSecret(secret []byte) []byte {
	sum := sha256.Sum256(secret)
	return sum[:]
}

// VerifySecret reports whether secret is t's secret, in constant time.
func VerifySecret(t Tunnel, secret []byte) bool {
	if len(t.SecretHash) != sha256.Size {
		return false
	}
	return subtle.ConstantTimeCompare(HashSecret(secret), t.SecretHash) == 1
}

// maxNameLen is the longest tunnel name.
const maxNameLen = 64

// ValidateName checks a tunnel name: 1-64 characters of [A-Za-z0-9._-], not
// "." or "..", and not shaped like a UUID (GetTunnel would read it as an ID).
func ValidateName(name string) error {
	if name == "" {
		return Errorf(ErrInvalid, "tunnel name is empty")
	}
	if len(name) > maxNameLen {
		return Errorf(ErrInvalid, "tunnel name is %d characters, the limit is %d", len(name), maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return Errorf(ErrInvalid, "tunnel name %q: character %q is not allowed (use letters, digits, '.', '_' and '-')", name, c)
		}
	}
	if name == "." || name == ".." {
		return Errorf(ErrInvalid, "tunnel name %q is not allowed", name)
	}
	if _, ok := ParseID(name); ok {
		return Errorf(ErrInvalid, "tunnel name %q looks like a tunnel ID; pick a name that is not a UUID", name)
	}
	return nil
}

// ParseID returns the canonical (lower-case) form of s if s is a UUID in its
// 36-character form: how GetTunnel tells a tunnel ID from a name.
func ParseID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return "", false
	}
	return u.String(), true
}

// MaxHostnameLen is the longest DNS name, without a trailing dot.
const MaxHostnameLen = 253

// ValidateHostname checks a route hostname and returns its canonical form:
// lower-case, without a trailing dot. A hostname is a DNS name of labels of
// 1-63 letters, digits and '-' (not at either end of a label), at most 253
// characters, whose last label is not all digits (no IP addresses); it may
// start with "*." to cover every name below the rest. Internationalized names
// must be given in their punycode ("xn--") form.
func ValidateHostname(hostname string) (string, error) {
	h := strings.TrimSuffix(hostname, ".")
	if h == "" {
		return "", Errorf(ErrInvalid, "hostname is empty")
	}
	if len(h) > MaxHostnameLen {
		return "", Errorf(ErrInvalid, "hostname is %d characters, the limit is %d", len(h), MaxHostnameLen)
	}
	rest := strings.TrimPrefix(h, "*.")
	for label := range strings.SplitSeq(rest, ".") {
		if err := checkLabel(hostname, label); err != nil {
			return "", err
		}
	}
	if last := rest[strings.LastIndexByte(rest, '.')+1:]; strings.Trim(last, "0123456789") == "" {
		return "", Errorf(ErrInvalid, "hostname %q: the last label is a number; IP addresses cannot be routed", hostname)
	}
	return lowerASCII(h), nil
}

func checkLabel(hostname, label string) error {
	switch {
	case label == "":
		return Errorf(ErrInvalid, "hostname %q has an empty label", hostname)
	case len(label) > 63:
		return Errorf(ErrInvalid, "hostname %q: label %q is longer than 63 characters", hostname, label)
	case label[0] == '-' || label[len(label)-1] == '-':
		return Errorf(ErrInvalid, "hostname %q: label %q starts or ends with '-'", hostname, label)
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-':
		case c == '*':
			return Errorf(ErrInvalid, "hostname %q: '*' is only allowed as the whole first label (\"*.example.com\")", hostname)
		case c >= 0x80:
			return Errorf(ErrInvalid, "hostname %q is not ASCII; give internationalized names in punycode (xn--...)", hostname)
		default:
			return Errorf(ErrInvalid, "hostname %q: character %q is not allowed", hostname, c)
		}
	}
	return nil
}

// lowerASCII lower-cases ASCII letters; s is returned as is if it has none in upper case.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
