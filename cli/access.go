package cli

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/adit-dev/adit/carrier"
)

// accessFlags are `adit access tcp`'s flags (cloudflared's names and aliases).
type accessFlags struct {
	hostname    string
	url         string
	edge        string
	destination string
	headers     []string
	edgeCA      string
	// serviceTokenID and serviceTokenSecretFile: a service token to send
	// (cloudflared's --service-token-id; the secret from a file or the
	// environment, never an argument).
	serviceTokenID         string
	serviceTokenSecretFile string
}

func newAccessCmd(g *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "access",
		Short: "Access: log in to protected applications, reach TCP services, manage applications and policies",
		Args:  noArgsGroup,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(newAccessTCPCmd(g))
	cmd.AddCommand(newAccessLoginCmd(g), newAccessTokenCmd(g), newAccessCurlCmd(g)) // access_login.go
	cmd.AddCommand(newAccessIdPCmd(g), newAccessAppCmd(g), newAccessPolicyCmd(g))   // access_admin.go
	return cmd
}

func newAccessTCPCmd(g *Env) *cobra.Command {
	var f accessFlags
	cmd := &cobra.Command{
		Use:     "tcp --hostname HOSTNAME [--url 127.0.0.1:PORT]",
		Aliases: []string{"ssh", "rdp", "smb"},
		Short:   "Carry TCP connections to a tunnel's service over a WebSocket to the edge",
		Long: `Carry TCP connections to the service a tunnel serves for --hostname: its
ingress rule must be a TCP service (tcp://, ssh://, rdp://, smb://, bastion).

With --url, listen on that local address and carry each connection:

  adit access tcp --hostname db.example.com --url 127.0.0.1:5432

Without --url, carry standard input and output, for OpenSSH's ProxyCommand:

  ssh -o ProxyCommand="adit access ssh --hostname %h" me@ssh.example.com

'ssh', 'rdp' and 'smb' are other names for this command. The edge is
https://HOSTNAME unless --edge names it (http://127.0.0.1:8080 for a local
edge). For a bastion rule, --destination names the host:port to reach.`,
		Args: ExactArgs(0, "no arguments (the hostname goes in --hostname)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAccess(cmd, g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.hostname, "hostname", "T", "", "public hostname of the service (alias --tunnel-host)")
	fl.StringVarP(&f.url, "url", "L", "", "local address to listen on, host:port (alias --listener); if empty, standard input and output")
	fl.StringVar(&f.edge, "edge", "", "URL of the edge's public listener (default https://HOSTNAME)")
	fl.StringVar(&f.destination, "destination", "", "host:port the tunnel's bastion rule should connect to")
	fl.StringArrayVarP(&f.headers, "header", "H", nil, `extra request header "Name: value" (repeatable)`)
	fl.StringVar(&f.edgeCA, "edge-ca", "", "PEM CA file to trust for an https edge (default: system roots)")
	fl.StringVar(&f.serviceTokenID, "service-token-id", "", "Access service token client ID (default $"+serviceTokenIDEnv+" or $TUNNEL_SERVICE_TOKEN_ID)")
	fl.StringVar(&f.serviceTokenSecretFile, "service-token-secret-file", "", "file holding the service token's secret (default $"+serviceTokenSecretEnv+" or $TUNNEL_SERVICE_TOKEN_SECRET)")
	fl.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		switch name {
		case "tunnel-host":
			name = "hostname"
		case "listener":
			name = "url"
		}
		return pflag.NormalizedName(name)
	})
	return cmd
}

func (f accessFlags) options(g *Env) (carrier.Options, error) {
	if f.hostname == "" {
		return carrier.Options{}, errors.New("access: --hostname is required")
	}
	opts := carrier.Options{
		Hostname:    f.hostname,
		EdgeURL:     f.edge,
		Destination: f.destination,
		Logger:      g.Logger(),
	}
	if len(f.headers) > 0 {
		opts.Header = make(http.Header)
		for _, h := range f.headers {
			name, value, ok := strings.Cut(h, ":")
			name = strings.TrimSpace(name)
			if !ok || name == "" {
				return carrier.Options{}, fmt.Errorf("access: --header %q: want \"Name: value\"", h)
			}
			opts.Header.Add(name, strings.TrimSpace(value))
		}
	}
	if err := f.accessHeaders(g, &opts); err != nil {
		return carrier.Options{}, err
	}
	if f.edgeCA != "" {
		pem, err := os.ReadFile(f.edgeCA)
		if err != nil {
			return carrier.Options{}, fmt.Errorf("access: --edge-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return carrier.Options{}, fmt.Errorf("access: --edge-ca: %s holds no PEM certificate", f.edgeCA)
		}
		opts.TLS = &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}
	}
	return opts, nil
}

func runAccess(cmd *cobra.Command, g *Env, f accessFlags) error {
	opts, err := f.options(g)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if f.url == "" {
		conn, err := carrier.Dial(ctx, opts)
		if err != nil {
			return err
		}
		err = carrier.Pipe(&stdio{r: cmd.InOrStdin(), w: g.Stdout}, conn)
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("access: connection to %s broke off: %w", f.hostname, err)
		}
		return nil
	}
	addr := strings.TrimPrefix(f.url, "tcp://")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return AddrInUse(fmt.Errorf("access: --url: %w", err), "--url") // addrinuse.go
	}
	edge := f.edge
	if edge == "" {
		edge = "https://" + f.hostname
	}
	fmt.Fprintf(g.Stderr, "adit access: listening on %s, carrying connections to %s through %s\n", ln.Addr(), f.hostname, edge)
	return carrier.ServeListener(ctx, ln, opts)
}

// stdio is standard input and output as one connection. CloseWrite closes
// standard output (when it can be closed), so the reader on the other end
// sees the end of the stream.
type stdio struct {
	r io.Reader
	w io.Writer
}

func (s *stdio) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s *stdio) Write(p []byte) (int, error) { return s.w.Write(p) }

func (s *stdio) CloseWrite() error {
	if c, ok := s.w.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

func (s *stdio) Close() error {
	s.CloseWrite()
	if c, ok := s.r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// The environment variables of a service token for `access tcp|ssh`.
const (
	serviceTokenIDEnv     = "ADIT_ACCESS_CLIENT_ID"
	serviceTokenSecretEnv = "ADIT_ACCESS_CLIENT_SECRET"
)

// accessHeaders adds what Access needs to let the connection through: a
// service token (flags or environment), else the session token `adit
// access login` kept for the hostname, if any.
func (f accessFlags) accessHeaders(g *Env, opts *carrier.Options) error {
	id := cmp.Or(f.serviceTokenID, os.Getenv(serviceTokenIDEnv), os.Getenv("TUNNEL_SERVICE_TOKEN_ID"))
	secret := cmp.Or(os.Getenv(serviceTokenSecretEnv), os.Getenv("TUNNEL_SERVICE_TOKEN_SECRET"))
	if f.serviceTokenSecretFile != "" {
		b, err := os.ReadFile(f.serviceTokenSecretFile)
		if err != nil {
			return fmt.Errorf("access: --service-token-secret-file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	if opts.Header == nil {
		opts.Header = make(http.Header)
	}
	switch {
	case id != "" && secret != "":
		opts.Header.Set("Adit-Access-Client-Id", id)
		opts.Header.Set("Adit-Access-Client-Secret", secret)
	case id != "" || f.serviceTokenSecretFile != "":
		return errors.New("access: a service token needs both its ID and its secret")
	default:
		if tok, err := tokenStore(g).Load("https://"+f.hostname, time.Now()); err == nil {
			opts.Header.Set("Cf-Access-Token", tok)
		}
	}
	return nil
}
