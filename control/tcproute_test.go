package control

import (
	"strings"
	"testing"
)

func FuzzValidateTCPHostname(f *testing.F) {
	for _, s := range []string{"", "ssh.example.com", "SSH.Example.COM.", "*.example.com", "a..b", "xn--bcher-kva.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		got, err := ValidateTCPHostname(h)
		if err != nil {
			return
		}
		if strings.Contains(got, "*") {
			t.Fatalf("ValidateTCPHostname(%q) = %q, a wildcard", h, got)
		}
		again, err := ValidateTCPHostname(got)
		if err != nil || again != got {
			t.Fatalf("ValidateTCPHostname(%q) = %q, which validates to %q, %v", h, got, again, err)
		}
	})
}
