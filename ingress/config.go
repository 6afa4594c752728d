package ingress

import (
	"fmt"
	"os"
	"time"
)

// Config is a cloudflared config.yml as written. Fields hold what the file says; a
// zero value means the key was absent (or set to its zero) and the consumer applies the
// default documented on the field. [New] validates and compiles it; [Parse] fills it.
//
// The struct carries yaml tags naming cloudflared's keys, so yaml.Marshal writes a
// config that Parse reads back to an equal Config.
type Config struct {
	// Tunnel is the tunnel's UUID or name. Empty: given some other way (flag, token).
	Tunnel string `yaml:"tunnel,omitempty"`
	// CredentialsFile is the path of the tunnel's credentials JSON. Empty: looked up
	// next to the config by the CLI.
	CredentialsFile string `yaml:"credentials-file,omitempty"`
	// OriginCert is the path of cloudflared's cert.pem (account login). Empty: none.
	OriginCert string `yaml:"origincert,omitempty"`

	// OriginRequest holds the originRequest options that apply to every rule unless
	// the rule sets its own. Unset fields take the defaults of [OriginRequest].
	OriginRequest OriginRequestConfig `yaml:"originRequest,omitempty"`
	// Ingress is the ordered list of rules; the last must match every request.
	// Empty: URL or HelloWorld is used instead (see [New]).
	Ingress []RuleConfig `yaml:"ingress,omitempty"`
	// URL is the legacy single-origin form: one catch-all rule with this service.
	// Empty: not used. It may not be combined with Ingress.
	URL string `yaml:"url,omitempty"`
	// HelloWorld is the legacy form of a single hello_world catch-all rule.
	HelloWorld bool `yaml:"hello-world,omitempty"`

	// WarpRouting holds cloudflared's private-network routing options. Zero: off.
	WarpRouting WarpRouting `yaml:"warp-routing,omitempty"`

	// Protocol is the transport to the edge: "auto", "quic", "websocket", or
	// cloudflared's "http2" (its TCP transport). Empty means "auto".
	Protocol string `yaml:"protocol,omitempty" check:"oneof=auto quic websocket http2"`
	// EdgeIPVersion is "auto", "4" or "6". Empty means "auto".
	EdgeIPVersion string `yaml:"edge-ip-version,omitempty" check:"oneof=auto 4 6"`
	// EdgeBindAddress is the local address to dial the edge from. Empty: any.
	EdgeBindAddress string `yaml:"edge-bind-address,omitempty" check:"ip"`
	// Region is the edge region the connector prefers (matched against the
	// fleet's edges, adit edge --region); cloudflared's "us" restricts. Empty: any.
	Region string `yaml:"region,omitempty"`
	// HAConnections is the number of connections to the edge. Zero means
	// the connector's default, 4 (connector.DefaultHAConnections).
	HAConnections int `yaml:"ha-connections,omitempty" check:"nonnegative"`
	// Retries is cloudflared's count of retries of a failed connection before
	// it gives up. Nil: not set. `adit tunnel run` refuses it: adit retries
	// until stopped.
	Retries *int `yaml:"retries,omitempty" check:"nonnegative"`
	// GracePeriod is how long shutdown waits for in-flight requests. Zero means
	// the connector's default, 30s (connector.DefaultGracePeriod).
	GracePeriod Duration `yaml:"grace-period,omitempty" check:"nonnegative"`
	// PostQuantum asks for post-quantum key agreement with the edge. Zero: off.
	PostQuantum bool `yaml:"post-quantum,omitempty"`
	// Tag lists "KEY=VALUE" labels reported with the connector. Empty: none.
	Tag []string `yaml:"tag,omitempty" check:"keyvalue"`

	// LogLevel is "debug", "info", "warn", "error" or "fatal". Empty means "info".
	LogLevel string `yaml:"loglevel,omitempty" check:"oneof=debug info warn error fatal"`
	// TransportLogLevel is the level for the edge transport's logs. Empty means "info".
	TransportLogLevel string `yaml:"transport-loglevel,omitempty" check:"oneof=debug info warn error fatal"`
	// LogFile is a file to append logs to. Empty: standard error.
	LogFile string `yaml:"logfile,omitempty"`
	// LogDirectory is a directory to write logs into. Empty: none.
	LogDirectory string `yaml:"log-directory,omitempty"`
	// Metrics is the host:port of the metrics server. Empty: chosen by the CLI.
	Metrics string `yaml:"metrics,omitempty" check:"hostport"`
	// PIDFile is a file to write the process ID to. Empty: none.
	PIDFile string `yaml:"pidfile,omitempty"`
	// NoAutoupdate turns cloudflared's self-update off. adit never updates itself;
	// the key is accepted so cloudflared configs load.
	NoAutoupdate bool `yaml:"no-autoupdate,omitempty"`
	// AutoupdateFreq is cloudflared's update check period; accepted and unused.
	AutoupdateFreq Duration `yaml:"autoupdate-freq,omitempty" check:"nonnegative"`
}

// RuleConfig is one entry of the ingress list as written.
type RuleConfig struct {
	// Hostname is the public hostname the rule serves: exact ("app.example.com") or a
	// leading wildcard ("*.example.com"). Empty or "*" matches every hostname.
	Hostname string `yaml:"hostname,omitempty"`
	// Path is a Go regexp matched against the request's URL path. Empty matches
	// every path.
	Path string `yaml:"path,omitempty"`
	// Service is where matching requests go; see [ParseService]. Required.
	Service string `yaml:"service,omitempty"`
	// OriginRequest overrides the global originRequest field by field.
	OriginRequest OriginRequestConfig `yaml:"originRequest,omitempty"`
}

// WarpRouting is cloudflared's warp-routing section, kept so configs load.
type WarpRouting struct {
	// Enabled turns private-network routing on. Zero: off.
	Enabled bool `yaml:"enabled,omitempty"`
	// ConnectTimeout bounds dialing a private-network destination. Zero means 5s.
	ConnectTimeout Duration `yaml:"connectTimeout,omitempty" check:"nonnegative"`
	// TCPKeepAlive is the keep-alive period of those connections. Zero means 30s.
	TCPKeepAlive Duration `yaml:"tcpKeepAlive,omitempty" check:"nonnegative"`
	// MaxActiveFlows caps concurrent flows. Zero means no limit.
	MaxActiveFlows int `yaml:"maxActiveFlows,omitempty" check:"nonnegative"`
}

// OriginRequestConfig is an originRequest section as written: nil fields were not
// set and inherit (a rule's from the global section, the global's from the defaults).
// Each option is described, with its default, on [OriginRequest]. Durations accept
// "30s", "1m30s" or a whole number of seconds.
type OriginRequestConfig struct {
	ConnectTimeout         *Duration `yaml:"connectTimeout,omitempty" check:"nonnegative"`
	TLSTimeout             *Duration `yaml:"tlsTimeout,omitempty" check:"nonnegative"`
	TCPKeepAlive           *Duration `yaml:"tcpKeepAlive,omitempty" check:"nonnegative"`
	NoHappyEyeballs        *bool     `yaml:"noHappyEyeballs,omitempty"`
	KeepAliveConnections   *int      `yaml:"keepAliveConnections,omitempty" check:"nonnegative"`
	KeepAliveTimeout       *Duration `yaml:"keepAliveTimeout,omitempty" check:"nonnegative"`
	HTTPHostHeader         *string   `yaml:"httpHostHeader,omitempty" check:"host"`
	OriginServerName       *string   `yaml:"originServerName,omitempty"`
	MatchSNIToHost         *bool     `yaml:"matchSNItoHost,omitempty"`
	CAPool                 *string   `yaml:"caPool,omitempty"`
	NoTLSVerify            *bool     `yaml:"noTLSVerify,omitempty"`
	DisableChunkedEncoding *bool     `yaml:"disableChunkedEncoding,omitempty"`
	HTTP2Origin            *bool     `yaml:"http2Origin,omitempty"`
	BastionMode            *bool     `yaml:"bastionMode,omitempty"`
	ProxyAddress           *string   `yaml:"proxyAddress,omitempty"`
	ProxyPort              *int      `yaml:"proxyPort,omitempty" check:"port"`
	ProxyType              *string   `yaml:"proxyType,omitempty" check:"proxytype"`
	// IPRules replaces the inherited list when non-empty; an empty list inherits.
	IPRules []IPRule `yaml:"ipRules,omitempty"`
	// Access replaces the inherited access section as a whole when set.
	Access *Access `yaml:"access,omitempty"`
}

// IPRule allows or denies destinations of the SOCKS proxy and bastion services.
type IPRule struct {
	// Prefix is a CIDR ("10.0.0.0/8"). Required.
	Prefix string `yaml:"prefix,omitempty" check:"prefix"`
	// Ports restricts the rule to these ports. Empty: all ports.
	Ports []int `yaml:"ports,omitempty" check:"destport"`
	// Allow allows matching destinations; zero (false) denies them.
	Allow bool `yaml:"allow,omitempty"`
}

// Access is cloudflared's per-origin Access check: with Required, the connector
// verifies the Access JWT the edge sends (signature from the edge's keys at
// TeamName, audience among AUDTag, expiry) before the origin sees a request.
type Access struct {
	// Required demands a valid Access JWT on every request. Zero: not required.
	Required bool `yaml:"required,omitempty"`
	// TeamName is where the edge serves the Access keys: the hostname of an
	// Access application (keys at https://TeamName/cdn-cgi/access/certs) or
	// its URL. Required with Required.
	TeamName string `yaml:"teamName,omitempty"`
	// AUDTag lists the Access application audience tags accepted. Required
	// with Required.
	AUDTag []string `yaml:"audTag,omitempty"`
}

// Duration is a time.Duration written in config files as "30s" or "1m30s" (or a
// whole number of seconds).
type Duration time.Duration

// MarshalYAML writes d the way Parse reads it back, like "1m30s".
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// String returns d like "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// Load reads and parses the config file at path. See [Parse].
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ingress: read config: %w", err)
	}
	return parse(data, path)
}
