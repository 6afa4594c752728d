package cli

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/credentials"
	"github.com/spf13/cobra"
)

// apiTokenEnv names the environment variable holding an API token when
// --token-file is not given.
const apiTokenEnv = "ADIT_API_TOKEN"

// apiFlags are the flags that say how to reach the control API.
type apiFlags struct {
	// API is --api, the API's base URL. If empty, cert.json is used.
	API string
	// TokenFile is --token-file. If empty, $ADIT_API_TOKEN, then cert.json.
	TokenFile string
	// CA is --ca, a PEM file. If empty, cert.json's CA when the API comes from
	// it, else the system roots.
	CA string
}

func (f *apiFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.API, "api", "", "control API base URL (default: from cert.json)")
	cmd.Flags().StringVar(&f.TokenFile, "token-file", "", "file holding the API token (default: $"+apiTokenEnv+", then cert.json)")
	cmd.Flags().StringVar(&f.CA, "ca", "", "PEM CA file to trust for the API (default: from cert.json, else system roots)")
}

// readToken returns the API token from --token-file, else $ADIT_API_TOKEN, else "".
func (f *apiFlags) readToken() (string, error) {
	if f.TokenFile != "" {
		b, err := os.ReadFile(f.TokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("--token-file: %s is empty", f.TokenFile)
		}
		return tok, nil
	}
	return strings.TrimSpace(os.Getenv(apiTokenEnv)), nil
}

// readCA returns the contents of --ca, checked to hold a certificate, or nil.
func (f *apiFlags) readCA() ([]byte, error) {
	if f.CA == "" {
		return nil, nil
	}
	b, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("--ca: %s holds no PEM certificate", f.CA)
	}
	return b, nil
}

// login resolves the flags into a Login: with --api, from the flags and the
// environment alone; without, from cert.json with --token-file and --ca
// overriding it.
func (f *apiFlags) login(home string) (*credentials.Login, error) {
	var l credentials.Login
	if f.API == "" {
		saved, err := credentials.LoadLogin(home)
		if err != nil {
			return nil, err
		}
		l = *saved
	} else {
		l.API = f.API
	}
	tok, err := f.readToken()
	if err != nil {
		return nil, err
	}
	if tok != "" {
		l.Token = tok
	}
	if l.Token == "" {
		return nil, fmt.Errorf("no API token: pass --token-file or set $%s", apiTokenEnv)
	}
	ca, err := f.readCA()
	if err != nil {
		return nil, err
	}
	if ca != nil {
		l.CAPEM = string(ca)
	}
	return &l, nil
}

// client builds the control API client the flags describe.
func (f *apiFlags) client(home string) (control.API, error) {
	c, err := f.apiClient(home)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// apiClient is client as the HTTPS client itself, with the endpoints
// that are not in control.API (certificates, Access, the shield).
func (f *apiFlags) apiClient(home string) (*control.Client, error) {
	l, err := f.login(home)
	if err != nil {
		return nil, err
	}
	return control.NewClient(l.API, l.Token, []byte(l.CAPEM))
}

// apiError adds advice to the control API's errors a person can fix.
func apiError(err error) error {
	var unknownCA x509.UnknownAuthorityError
	switch {
	case errors.Is(err, control.ErrUnauthorized):
		return fmt.Errorf("the API refused the token (run `adit login` again): %w", err)
	case errors.As(err, &unknownCA):
		return fmt.Errorf("%w (pass --ca with the edge's CA certificate)", err)
	}
	return err
}

func newLoginCmd(g *Env) *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "login --api URL --token-file FILE [--ca FILE]",
		Short: "Check an API token against an edge and save it for later commands",
		Long: `Login checks that the edge's control API answers with the given token and
saves the API URL, token and CA to cert.json in the adit home directory, mode 0600.
The token comes from --token-file, else $` + apiTokenEnv + `. Without --ca the API's
certificate must be trusted by the system roots.`,
		Args: ExactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.API == "" {
				return errors.New("login: --api is required")
			}
			tok, err := f.readToken()
			if err != nil {
				return fmt.Errorf("login: %w", err)
			}
			if tok == "" {
				return fmt.Errorf("login: no API token: pass --token-file or set $%s", apiTokenEnv)
			}
			ca, err := f.readCA()
			if err != nil {
				return fmt.Errorf("login: %w", err)
			}
			c, err := control.NewClient(f.API, tok, ca)
			if err != nil {
				return fmt.Errorf("login: %w", err)
			}
			info, err := c.EdgeInfo(cmd.Context())
			if err != nil {
				return fmt.Errorf("login: %w", apiError(err))
			}
			l := &credentials.Login{API: f.API, Token: tok, CAPEM: string(ca)}
			if err := l.Save(g.Home); err != nil {
				return err
			}
			path := filepath.Join(g.Home, credentials.LoginFile)
			fmt.Fprintf(g.Stdout, "Logged in to %s (edge node %s).\nAPI credentials written to %s. Keep this file secret.\n", f.API, info.Node, path)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}
