package control

import (
	"strings"
	"time"
)

// TCPRoute makes every edge listen on a public TCP port and carry each
// connection to a tunnel, as a TCP stream whose host is Hostname (so the
// connector's ingress rules pick the origin, as for `adit access`).
type TCPRoute struct {
	Port     int    `json:"port"` // 1-65535, on the host of each edge's public HTTP address
	TunnelID string `json:"tunnel_id"`
	// Hostname is the host the connector matches its ingress rules with;
	// lower-case, never a wildcard. Empty: the connector's catch-all rule.
	Hostname  string    `json:"hostname,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// ValidatePort checks a public TCP port number: 1 to 65535.
func ValidatePort(port int) error {
	if port < 1 || port > 65535 {
		return Errorf(ErrInvalid, "port %d is not from 1 to 65535", port)
	}
	return nil
}

// ValidateTCPHostname checks the hostname of a TCP route and returns its
// canonical form: empty (the connector's catch-all rule) or a hostname as
// ValidateHostname accepts it, but not a wildcard, since it names the one
// host the connector's ingress rules are matched with.
func ValidateTCPHostname(hostname string) (string, error) {
	if hostname == "" {
		return "", nil
	}
	if strings.HasPrefix(hostname, "*") {
		return "", Errorf(ErrInvalid, "hostname %q: a TCP route names one host, not a wildcard", hostname)
	}
	return ValidateHostname(hostname)
}
