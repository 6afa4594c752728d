package edgecmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/adit-dev/adit/edge"
)

func TestDNSFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "regions")
	if err := os.WriteFile(file, []byte("# nearest regions\n10.0.0.0/8=eu\n192.0.2.0/24=us,eu\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("10.0.0.0/8=eu\n10.0.0.0=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		args      []string
		wantRules []string
		wantErr   string
	}{
		{"off", nil, nil, ""},
		{"zones", []string{"--dns-addr", ":53", "--dns-zone", "example.com", "--dns-zone", "example.net"}, nil, ""},
		{"regions", []string{"--dns-addr", ":53", "--dns-zone", "example.com", "--dns-client-regions-file", file, "--dns-client-region", "10.1.0.0/16=ap"},
			[]string{"10.0.0.0/8=eu", "192.0.2.0/24=us,eu", "10.1.0.0/16=ap"}, ""},
		{"zone without addr", []string{"--dns-zone", "example.com"}, nil, "--dns-zone needs --dns-addr"},
		{"addr without zone", []string{"--dns-addr", ":53"}, nil, "--dns-addr needs at least one --dns-zone"},
		{"bad rule", []string{"--dns-addr", ":53", "--dns-zone", "e.com", "--dns-client-region", "10.0.0.0/8"}, nil, "--dns-client-region \"10.0.0.0/8\": want PREFIX=REGION"},
		{"bad file", []string{"--dns-addr", ":53", "--dns-zone", "e.com", "--dns-client-regions-file", bad}, nil, "line 2: "},
		{"missing file", []string{"--dns-addr", ":53", "--dns-zone", "e.com", "--dns-client-regions-file", bad + "x"}, nil, "--dns-client-regions-file: open"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var cfg edge.Config
			var f dnsFlags
			fl := pflag.NewFlagSet("edge", pflag.ContinueOnError)
			addDNSFlags(fl, &cfg, &f)
			if err := fl.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := f.apply(&cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("apply: %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range cfg.DNS.ClientRegions {
				got = append(got, r.String())
			}
			if strings.Join(got, " ") != strings.Join(tt.wantRules, " ") {
				t.Errorf("rules %q, want %q", got, tt.wantRules)
			}
		})
	}
}
