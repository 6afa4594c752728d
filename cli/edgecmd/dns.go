package edgecmd

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/edgedns"
)

// dnsFlags are `adit edge`'s flags for its authoritative DNS server
// (package edgedns).
type dnsFlags struct {
	regions     []string
	regionsFile string
}

func addDNSFlags(fl *pflag.FlagSet, cfg *edge.Config, f *dnsFlags) {
	fl.StringVar(&cfg.DNS.Addr, "dns-addr", "", "serve DNS for --dns-zone on this address, UDP and TCP, e.g. :53 (default: no DNS)")
	fl.StringArrayVar(&cfg.DNS.Zones, "dns-zone", nil, "zone the edges are authoritative for, e.g. example.com (repeatable); routed names in it resolve to the live edges")
	fl.StringArrayVar(&f.regions, "dns-client-region", nil, "PREFIX=REGION[,REGION...]: clients in PREFIX (by EDNS Client Subnet, else the resolver's address) get these regions' edges first, nearest first (repeatable)")
	fl.StringVar(&f.regionsFile, "dns-client-regions-file", "", "file of --dns-client-region rules, one a line ('#' starts a comment); a flag overrides a line for the same prefix")
	fl.DurationVar(&cfg.DNS.TTL, "dns-ttl", edgedns.DefaultTTL, "TTL of the A, AAAA and SRV answers: a dead edge leaves resolvers' caches within its lease TTL plus this")
}

// apply puts what the flags say into cfg.
func (f *dnsFlags) apply(cfg *edge.Config) error {
	dns := &cfg.DNS
	if dns.Addr == "" {
		for name, set := range map[string]bool{"--dns-zone": len(dns.Zones) > 0, "--dns-client-region": len(f.regions) > 0, "--dns-client-regions-file": f.regionsFile != ""} {
			if set {
				return fmt.Errorf("%s needs --dns-addr (the address the DNS server listens on)", name)
			}
		}
		return nil
	}
	if len(dns.Zones) == 0 {
		return fmt.Errorf("--dns-addr needs at least one --dns-zone")
	}
	if f.regionsFile != "" {
		file, err := os.Open(f.regionsFile)
		if err != nil {
			return fmt.Errorf("--dns-client-regions-file: %w", err)
		}
		rules, err := edgedns.ParseRegionRules(file)
		file.Close()
		if err != nil {
			return fmt.Errorf("--dns-client-regions-file %s: %w", f.regionsFile, err)
		}
		dns.ClientRegions = append(dns.ClientRegions, rules...)
	}
	for _, s := range f.regions {
		r, err := edgedns.ParseRegionRule(s)
		if err != nil {
			return fmt.Errorf("--dns-client-region %w", err)
		}
		dns.ClientRegions = append(dns.ClientRegions, r)
	}
	return nil
}

// dnsLine describes the DNS server for the start banner.
func dnsLine(srv *edge.Server, cfg *edge.Config) string {
	a := srv.DNSAddr()
	if a == nil {
		return ""
	}
	return fmt.Sprintf("  DNS          %s (udp and tcp), authoritative for %s\n", a, strings.Join(cfg.DNS.Zones, ", "))
}
