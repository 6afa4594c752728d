package control

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestValidateHostname(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{"simple", "app.example.com", "app.example.com", false},
		{"upper case", "App.EXAMPLE.com", "app.example.com", false},
		{"trailing dot", "app.example.com.", "app.example.com", false},
		{"wildcard", "*.Example.com", "*.example.com", false},
		{"single label", "localhost", "localhost", false},
		{"digits and hyphens", "a-1.b2.example", "a-1.b2.example", false},
		{"punycode", "xn--bcher-kva.example", "xn--bcher-kva.example", false},
		{"63-character label", long63 + ".com", long63 + ".com", false},
		{"253 characters", strings.Repeat(strings.Repeat("a", 49)+".", 5) + "abc", strings.Repeat(strings.Repeat("a", 49)+".", 5) + "abc", false},
		{"empty", "", "", true},
		{"dot", ".", "", true},
		{"254 characters", strings.Repeat(strings.Repeat("a", 49)+".", 5) + "abcd", "", true},
		{"64-character label", strings.Repeat("a", 64) + ".com", "", true},
		{"empty label", "a..com", "", true},
		{"leading dot", ".a.com", "", true},
		{"leading hyphen", "-a.com", "", true},
		{"trailing hyphen", "a-.com", "", true},
		{"underscore", "a_b.com", "", true},
		{"space", "a b.com", "", true},
		{"port", "a.com:80", "", true},
		{"wildcard in the middle", "a.*.com", "", true},
		{"partial wildcard", "*a.com", "", true},
		{"bare wildcard", "*", "", true},
		{"wildcard without a base", "*.", "", true},
		{"double wildcard", "*.*.com", "", true},
		{"IPv4", "10.0.0.1", "", true},
		{"numeric last label", "a.123", "", true},
		{"unicode", "bücher.example", "", true},
		{"kelvin sign", "\u212a.com", "", true},
		{"slash", "a.com/x", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ValidateHostname(tt.in)
			if tt.wantErr {
				if err == nil || !errors.Is(err, ErrInvalid) {
					t.Errorf("ValidateHostname(%q) = %q, %v; want an ErrInvalid", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ValidateHostname(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func FuzzValidateHostname(f *testing.F) {
	for _, s := range []string{
		"app.example.com", "*.example.com", "App.Example.COM.", "a..b", "-a.com", "10.0.0.1",
		"xn--bcher-kva.example", "*.*.com", "\u212a.com", strings.Repeat("a.", 130), "a.com:443", "*",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ValidateHostname(in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ValidateHostname(%q) error %v is not ErrInvalid", in, err)
			}
			return
		}
		if got != strings.ToLower(got) {
			t.Errorf("ValidateHostname(%q) = %q, not lower-case", in, got)
		}
		if len(got) == 0 || len(got) > MaxHostnameLen {
			t.Errorf("ValidateHostname(%q) = %q, %d characters, want 1..253", in, got, len(got))
		}
		if !strings.EqualFold(strings.TrimSuffix(in, "."), got) {
			t.Errorf("ValidateHostname(%q) = %q, want the input up to case and a trailing dot", in, got)
		}
		again, err := ValidateHostname(got)
		if err != nil || again != got {
			t.Errorf("ValidateHostname(%q) = %q, %v; want it unchanged", got, again, err)
		}
		// controlserver's FuzzStateRoute checks that State.Route finds it.
	})
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name, in string
		wantOK   bool
	}{
		{"simple", "web", true},
		{"all characters", "Web_1.prod-2", true},
		{"64 characters", strings.Repeat("n", 64), true},
		{"uuid without dashes", "0123456789abcdef0123456789abcdef", true},
		{"empty", "", false},
		{"65 characters", strings.Repeat("n", 65), false},
		{"space", "my web", false},
		{"slash", "a/b", false},
		{"dot", ".", false},
		{"dot dot", "..", false},
		{"uuid", "3f2b1e9a-8c4d-4e5f-9a6b-7c8d9e0f1a2b", false},
		{"unicode", "wéb", false},
	}
	for _, tt := range tests {
		err := ValidateName(tt.in)
		if (err == nil) != tt.wantOK || err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: ValidateName(%q) = %v, want ok=%v", tt.name, tt.in, err, tt.wantOK)
		}
	}
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"web", "a/b", "..", "3f2b1e9a-8c4d-4e5f-9a6b-7c8d9e0f1a2b", strings.Repeat("x", 65), "wéb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if ValidateName(in) != nil {
			return
		}
		if len(in) < 1 || len(in) > maxNameLen || strings.Trim(in, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
			t.Errorf("ValidateName accepted %q, outside 1-64 of [A-Za-z0-9._-]", in)
		}
		if _, isID := ParseID(in); isID || in == "." || in == ".." {
			t.Errorf("ValidateName accepted %q, which a path or an ID lookup would misread", in)
		}
	})
}

func TestHashSecret(t *testing.T) {
	a, b := HashSecret(secret(1)), HashSecret(secret(2))
	if len(a) != 32 || string(a) == string(b) || string(a) != string(HashSecret(secret(1))) {
		t.Errorf("HashSecret: got %x and %x, want distinct, stable 32-byte hashes", a, b)
	}
}

// secret returns a valid tunnel secret.
func secret(b byte) []byte { return bytes.Repeat([]byte{b}, MinSecretLen) }
