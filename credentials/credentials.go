// Package credentials reads and writes what a connector and the admin CLI
// need to reach an adit edge: the tunnel credentials file and tunnel token
// (both shaped like cloudflared's, so its files and tokens load unchanged),
// and the admin login kept in $ADIT_HOME/cert.json.
//
// The tunnel credentials file is JSON:
//
//	{
//	  "AccountTag":   "3f0c…",                     // opaque; adit uses a hash of the edge CA
//	  "TunnelID":     "6ff42ae2-765d-4adf-8112-31c55c1551ef",
//	  "TunnelSecret": "base64 (standard, padded) of >= 32 secret bytes",
//	  "TunnelName":   "web",                       // optional
//	  "EdgeAddrs":    ["edge.example.com:7844"],   // adit only; optional
//	  "EdgeCA":       "-----BEGIN CERTIFICATE-----…" // adit only; optional
//	}
//
// A token is the standard, padded base64 of compact JSON
// {"a": AccountTag, "t": TunnelID, "s": base64 secret, "e": EdgeAddrs, "c": EdgeCA}:
// cloudflared's a/t/s plus adit's e/c, which are left out when empty.
package credentials

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/adit-dev/adit/internal/pki"
	"github.com/google/uuid"
)

// MinSecretLen is the shortest tunnel secret accepted, in bytes.
const MinSecretLen = 32

// File is a tunnel credentials file.
type File struct {
	// AccountTag is carried for cloudflared compatibility; adit does not check it.
	AccountTag string
	// TunnelID is the tunnel's UUID in its 36-character form.
	TunnelID string
	// TunnelSecret is the raw secret (>= MinSecretLen bytes); on disk and in
	// tokens it is base64.
	TunnelSecret []byte
	// TunnelName is informational; empty if unknown.
	TunnelName string
	// EdgeAddrs are host:port addresses of edges to dial; empty means the
	// connector must be told where the edge is some other way.
	EdgeAddrs []string
	// EdgeCA is the PEM CA that signed the edges' certificates; empty means
	// the system roots are trusted.
	EdgeCA string
}

// fileJSON is File on disk.
type fileJSON struct {
	AccountTag   string   `json:"AccountTag"`
	TunnelSecret string   `json:"TunnelSecret"`
	TunnelID     string   `json:"TunnelID"`
	TunnelName   string   `json:"TunnelName,omitempty"`
	EdgeAddrs    []string `json:"EdgeAddrs,omitempty"`
	EdgeCA       string   `json:"EdgeCA,omitempty"`
}

// Validate reports the first missing or malformed field.
func (f *File) Validate() error {
	if f.TunnelID == "" {
		return errors.New("TunnelID: missing")
	}
	if len(f.TunnelID) != 36 {
		return errors.New("TunnelID: not a UUID (want xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
	}
	if _, err := uuid.Parse(f.TunnelID); err != nil {
		return errors.New("TunnelID: not a UUID (want xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
	}
	if len(f.TunnelSecret) == 0 {
		return errors.New("TunnelSecret: missing")
	}
	if len(f.TunnelSecret) < MinSecretLen {
		return fmt.Errorf("TunnelSecret: %d bytes, want at least %d", len(f.TunnelSecret), MinSecretLen)
	}
	for i, a := range f.EdgeAddrs {
		if a == "" || !strings.Contains(a, ":") {
			return fmt.Errorf("EdgeAddrs[%d]: %q is not host:port", i, a)
		}
	}
	return nil
}

// Load reads and validates a credentials file. It accepts a cloudflared file
// holding only AccountTag, TunnelID and TunnelSecret.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("credentials: %s: %w", path, err)
	}
	return f, nil
}

// Parse decodes and validates the contents of a credentials file. Its errors
// name the field and never include the secret.
func Parse(data []byte) (*File, error) {
	var j fileJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&j); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, fmt.Errorf("%s: want a JSON %s", te.Field, te.Type)
		}
		return nil, errors.New("not a JSON credentials file")
	}
	if dec.More() {
		return nil, errors.New("not a JSON credentials file: data after the object")
	}
	f := &File{
		AccountTag: j.AccountTag,
		TunnelID:   j.TunnelID,
		TunnelName: j.TunnelName,
		EdgeAddrs:  j.EdgeAddrs,
		EdgeCA:     j.EdgeCA,
	}
	if j.TunnelSecret != "" {
		s, err := decodeBase64(j.TunnelSecret)
		if err != nil {
			return nil, errors.New("TunnelSecret: not base64")
		}
		f.TunnelSecret = s
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return f, nil
}

// Marshal encodes f as an indented credentials file.
func (f *File) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(fileJSON{
		AccountTag:   f.AccountTag,
		TunnelSecret: base64.StdEncoding.EncodeToString(f.TunnelSecret),
		TunnelID:     f.TunnelID,
		TunnelName:   f.TunnelName,
		EdgeAddrs:    f.EdgeAddrs,
		EdgeCA:       f.EdgeCA,
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	return append(b, '\n'), nil
}

// Save validates f and writes it to path atomically with mode 0600, creating
// the parent directory (0700) if needed.
func (f *File) Save(path string) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	data, err := f.Marshal()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	if err := pki.WriteFileAtomic(path, data, 0o600); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	return nil
}

// tokenJSON is the JSON inside a token. E is raw so a cloudflared token whose
// "e" is its endpoint-region string still parses.
type tokenJSON struct {
	A string          `json:"a"`
	T string          `json:"t"`
	S string          `json:"s"`
	E json.RawMessage `json:"e,omitempty"`
	C string          `json:"c,omitempty"`
}

// Token encodes f as a tunnel token.
func (f *File) Token() (string, error) {
	if err := f.Validate(); err != nil {
		return "", fmt.Errorf("credentials: token: %w", err)
	}
	j := tokenJSON{A: f.AccountTag, T: f.TunnelID, S: base64.StdEncoding.EncodeToString(f.TunnelSecret), C: f.EdgeCA}
	if len(f.EdgeAddrs) > 0 {
		e, err := json.Marshal(f.EdgeAddrs)
		if err != nil {
			return "", fmt.Errorf("credentials: token: %w", err)
		}
		j.E = e
	}
	b, err := json.Marshal(j)
	if err != nil {
		return "", fmt.Errorf("credentials: token: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// ParseToken decodes and validates a tunnel token: standard or URL base64,
// padded or not, with surrounding whitespace ignored. A cloudflared token
// (only a, t, s) parses. Errors never include the token or the secret.
func ParseToken(s string) (*File, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("credentials: token: empty")
	}
	raw, err := decodeBase64(s)
	if err != nil {
		return nil, errors.New("credentials: token: not base64")
	}
	var j tokenJSON
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&j); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, fmt.Errorf("credentials: token: field %q: want a JSON %s", te.Field, te.Type)
		}
		return nil, errors.New("credentials: token: not a tunnel token (bad JSON)")
	}
	if dec.More() {
		return nil, errors.New("credentials: token: not a tunnel token (data after the JSON)")
	}
	f := &File{AccountTag: j.A, TunnelID: j.T, EdgeCA: j.C}
	if j.S != "" {
		sec, err := decodeBase64(j.S)
		if err != nil {
			return nil, errors.New(`credentials: token: field "s": not base64`)
		}
		f.TunnelSecret = sec
	}
	if len(j.E) > 0 && string(j.E) != "null" {
		var addrs []string
		if err := json.Unmarshal(j.E, &addrs); err == nil {
			f.EdgeAddrs = addrs
		} else {
			// cloudflared puts its endpoint region ("fed") here as a
			// string; it names no adit edge, so it is dropped.
			var region string
			if json.Unmarshal(j.E, &region) != nil {
				return nil, errors.New(`credentials: token: field "e": want a list of host:port`)
			}
		}
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("credentials: token: %w", err)
	}
	return f, nil
}

// decodeBase64 accepts standard or URL-safe base64, padded or not.
func decodeBase64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

// TokenFromSources picks the tunnel token: flagValue (--token) if set, else
// the trimmed contents of filePath (--token-file) if set, else
// env("ADIT_TUNNEL_TOKEN"). It returns "" if none is set. A nil env means
// os.Getenv.
func TokenFromSources(flagValue, filePath string, env func(string) string) (string, error) {
	if v := strings.TrimSpace(flagValue); v != "" {
		return v, nil
	}
	if filePath != "" {
		b, err := os.ReadFile(filePath)
		if err != nil {
			return "", fmt.Errorf("credentials: token file: %w", err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("credentials: token file %s is empty", filePath)
		}
		return v, nil
	}
	if env == nil {
		env = os.Getenv
	}
	return strings.TrimSpace(env("ADIT_TUNNEL_TOKEN")), nil
}
