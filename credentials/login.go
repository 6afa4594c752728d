package credentials

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/adit-dev/adit/internal/pki"
)

// LoginFile is the name of the admin login inside the adit home directory.
const LoginFile = "cert.json"

// Home returns the adit home directory: $ADIT_HOME if set, else ~/.adit
// (./.adit if the user's home directory is unknown).
func Home() string {
	if h := os.Getenv("ADIT_HOME"); h != "" {
		return h
	}
	u, err := os.UserHomeDir()
	if err != nil || u == "" {
		return ".adit"
	}
	return filepath.Join(u, ".adit")
}

// CredentialsPath is where `adit tunnel create` keeps a tunnel's credentials
// file by default: home/<tunnelID>.json.
func CredentialsPath(home, tunnelID string) string {
	return filepath.Join(home, tunnelID+".json")
}

// Login is what `adit login` stores so later admin commands can reach the
// control API.
type Login struct {
	// API is the base URL of the edge's API, e.g. https://edge.example.com:8443.
	API string `json:"api"`
	// Token is the API token.
	Token string `json:"token"`
	// CAPEM is the PEM CA to trust for API; empty means the system roots.
	CAPEM string `json:"ca_pem,omitempty"`
}

// LoadLogin reads home/cert.json. A missing file gives an error telling the
// user to run `adit login`.
func LoadLogin(home string) (*Login, error) {
	path := filepath.Join(home, LoginFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("credentials: not logged in (no %s); run `adit login --api URL --token-file FILE` first", path)
	}
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	var l Login
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("credentials: %s: not a JSON login file; run `adit login` again", path)
	}
	switch {
	case l.API == "":
		return nil, fmt.Errorf("credentials: %s: api: missing; run `adit login` again", path)
	case l.Token == "":
		return nil, fmt.Errorf("credentials: %s: token: missing; run `adit login` again", path)
	}
	return &l, nil
}

// Save writes l to home/cert.json atomically with mode 0600, creating home
// (0700) if needed.
func (l *Login) Save(home string) error {
	if l.API == "" || l.Token == "" {
		return errors.New("credentials: login: api and token are required")
	}
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	if err := pki.WriteFileAtomic(filepath.Join(home, LoginFile), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	return nil
}
