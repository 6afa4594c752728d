package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/control"
)

// newCertCmd is `adit cert`: the certificates of the edge's public HTTPS
// listener.
func newCertCmd(g *Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Certificates of the edge's public HTTPS listener (ACME and brought)",
		Long: `Certificates the edge serves on --https-addr. The edge orders one from its ACME CA
for every routed hostname by itself; 'cert add' brings your own (a wildcard route
needs one: ACME's HTTP and TLS-ALPN challenges cannot prove a wildcard).`,
	}
	cmd.AddCommand(newCertListCmd(g), newCertAddCmd(g), newCertDeleteCmd(g))
	return cmd
}

func newCertListCmd(g *Env) *cobra.Command {
	return listCmd(g, &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List certificates: hostname, source, issuer, expiry, last error",
		Args:    ExactArgs(0, "no arguments"),
	}, func(ctx context.Context, c *control.Client, _ []string) ([]control.Certificate, error) {
		return c.ListCertificates(ctx)
	}, listing[control.Certificate]{"No certificates.", "HOSTNAME\tSOURCE\tISSUER\tNOT AFTER\tLAST ERROR",
		func(ct control.Certificate) []any {
			notAfter, lastErr := "-", "-"
			if !ct.NotAfter.IsZero() {
				notAfter = ct.NotAfter.UTC().Format(time.RFC3339)
			}
			if ct.LastError != "" {
				lastErr = ct.ErrorAt.UTC().Format(time.RFC3339) + " " + clip(ct.LastError)
			}
			return []any{ct.Hostname, ct.Source, orDash(ct.Issuer), notAfter, lastErr}
		}})
}

func newCertAddCmd(g *Env) *cobra.Command {
	var (
		api               apiFlags
		certFile, keyFile string
	)
	cmd := &cobra.Command{
		Use:   "add HOSTNAME --cert FILE --key FILE",
		Short: "Serve a certificate you bring for HOSTNAME (wildcards such as *.example.com too)",
		Args:  ExactArgs(1, "a HOSTNAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if certFile == "" || keyFile == "" {
				return errors.New("cert add: --cert and --key are required")
			}
			host, err := control.ValidateHostname(args[0])
			if err != nil {
				return fmt.Errorf("cert add: %w", err)
			}
			certPEM, err := os.ReadFile(certFile)
			if err != nil {
				return fmt.Errorf("cert add: --cert: %w", err)
			}
			keyPEM, err := os.ReadFile(keyFile)
			if err != nil {
				return fmt.Errorf("cert add: --key: %w", err)
			}
			c, err := api.apiClient(g.Home)
			if err != nil {
				return err
			}
			ct, err := c.AddCertificate(cmd.Context(), host, control.AddCertificateRequest{CertPEM: string(certPEM), KeyPEM: string(keyPEM)})
			if err != nil {
				return fmt.Errorf("cert add: %w", apiError(err))
			}
			fmt.Fprintf(g.Stdout, "Serving the certificate for %s (names %s, valid until %s)\n",
				host, strings.Join(ct.Names, ", "), ct.NotAfter.UTC().Format(time.RFC3339))
			return nil
		},
	}
	api.register(cmd)
	cmd.Flags().StringVar(&certFile, "cert", "", "certificate chain (PEM), leaf first")
	cmd.Flags().StringVar(&keyFile, "key", "", "its private key (PEM)")
	return cmd
}

func newCertDeleteCmd(g *Env) *cobra.Command {
	var api apiFlags
	cmd := &cobra.Command{
		Use:     "delete HOSTNAME",
		Aliases: []string{"rm"},
		Short:   "Delete HOSTNAME's certificate (an ACME one is ordered again while the hostname is routed)",
		Args:    ExactArgs(1, "a HOSTNAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, err := control.ValidateHostname(args[0])
			if err != nil {
				return fmt.Errorf("cert delete: %w", err)
			}
			c, err := api.apiClient(g.Home)
			if err != nil {
				return err
			}
			err = c.DeleteCertificate(cmd.Context(), host)
			switch {
			case errors.Is(err, control.ErrNotFound):
				return fmt.Errorf("cert delete: no certificate for %s (see `adit cert list`)", host)
			case err != nil:
				return fmt.Errorf("cert delete: %w", apiError(err))
			}
			fmt.Fprintf(g.Stdout, "Deleted the certificate for %s\n", host)
			return nil
		},
	}
	api.register(cmd)
	return cmd
}

// clip keeps a long error on one table row.
func clip(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}
