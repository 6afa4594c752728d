package edgecmd

import (
	"crypto/x509"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/publictls"
)

// httpsFlags are `adit edge`'s flags for the public HTTPS listener and
// what stands in front of the public listeners.
type httpsFlags struct {
	caRoot         string
	http3          bool
	redirect       bool
	trustedProxies []string
}

func addHTTPSFlags(fl *pflag.FlagSet, cfg *edge.Config, f *httpsFlags) {
	fl.StringVar(&cfg.HTTPSAddr, "https-addr", "", "public HTTPS listen address, TCP and (HTTP/3) UDP, e.g. :443 (default: no HTTPS)")
	fl.StringVar(&cfg.ACME.CA, "acme-ca", publictls.LetsEncrypt, "ACME directory URL the edge orders certificates from")
	fl.StringVar(&cfg.ACME.Email, "acme-email", "", "contact address for the ACME account (expiry notices)")
	fl.StringVar(&f.caRoot, "acme-ca-root", "", "PEM file of the root to trust for --acme-ca's own HTTPS (a private ACME server such as step-ca or Pebble)")
	fl.BoolVar(&f.http3, "http3", true, "serve HTTP/3 on --https-addr's UDP port and announce it with Alt-Svc")
	fl.BoolVar(&f.redirect, "https-redirect", true, "answer plain-HTTP requests for hostnames with a certificate with 308 to https://")
	fl.BoolVar(&cfg.ProxyProtocol, "proxy-protocol", false, "require a PROXY protocol header (v1 or v2) on every public TCP connection (behind a load balancer)")
	fl.StringSliceVar(&f.trustedProxies, "trusted-proxies", nil, "CIDRs of load balancers whose X-Forwarded-For is kept and extended (comma-separated); with --proxy-protocol, the only peers allowed")
}

// apply puts what the flags say into cfg.
func (f *httpsFlags) apply(cfg *edge.Config) error {
	cfg.DisableHTTP3 = !f.http3
	cfg.DisableHTTPSRedirect = !f.redirect
	for _, s := range f.trustedProxies {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return fmt.Errorf("--trusted-proxies %q: not a CIDR or an IP address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, p.Masked())
	}
	if f.caRoot != "" {
		b, err := os.ReadFile(f.caRoot)
		if err != nil {
			return fmt.Errorf("--acme-ca-root: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("--acme-ca-root %s: no PEM certificate in it", f.caRoot)
		}
		cfg.ACME.CARoots = pool
	}
	return nil
}
