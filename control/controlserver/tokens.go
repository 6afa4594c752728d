package controlserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/adit-dev/adit/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TokenPrefix starts every API token adit generates.
const TokenPrefix = "adit_"

// maxTokenLen bounds the tokens CheckToken looks up.
const maxTokenLen = 512

// tokenRecord is an API token as stored, under the sha256 of the token.
type tokenRecord struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// NewToken returns a fresh API token: "adit_" and 32 random bytes in base64url.
func NewToken() string {
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(randomBytes(32))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand crashes the program instead)
	return b
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// EnsureAdminToken makes sure the admin API token in the file at path is
// registered. If the file does not exist, it generates a token, writes it
// there (mode 0600, atomically) and registers it: created is then true. Only
// the token's sha256 is stored in etcd.
func (s *Service) EnsureAdminToken(ctx context.Context, path string) (created bool, err error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		token := strings.TrimSpace(string(data))
		if token == "" {
			return false, fmt.Errorf("control: admin token file %s is empty; delete it to get a new token", path)
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			s.log.Warn("control: the admin token file is readable by other users; chmod 600 it", "path", path, "mode", fi.Mode().Perm().String())
		}
		return false, s.registerToken(ctx, token, "admin")
	case errors.Is(err, fs.ErrNotExist):
		token := NewToken()
		// The file first: if registering fails, the next start registers it.
		if err := writeFileAtomic(path, []byte(token+"\n")); err != nil {
			return false, fmt.Errorf("control: admin token: %w", err)
		}
		if err := s.registerToken(ctx, token, "admin"); err != nil {
			return false, err
		}
		s.log.Info("control: admin API token created", "path", path)
		return true, nil
	default:
		return false, fmt.Errorf("control: admin token: %w", err)
	}
}

// registerToken stores the hash of token under name, unless it is already there.
func (s *Service) registerToken(ctx context.Context, token, name string) error {
	val, err := json.Marshal(tokenRecord{Name: name, CreatedAt: now()})
	if err != nil {
		return fmt.Errorf("control: register token: %w", err)
	}
	key := store.TokenKey(tokenHash(token))
	_, err = s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val))).
		Commit()
	if err != nil {
		return etcdError("register token", err)
	}
	return nil
}

// CheckToken reports whether token is a registered API token. It looks the
// token up by its hash, so it leaks nothing through timing; an etcd failure is
// logged and reported as false.
func (s *Service) CheckToken(ctx context.Context, token string) bool {
	if token == "" || len(token) > maxTokenLen {
		return false
	}
	resp, err := s.cli.Get(ctx, store.TokenKey(tokenHash(token)), clientv3.WithCountOnly())
	if err != nil {
		s.log.Error("control: cannot check an API token", "err", err)
		return false
	}
	return resp.Count > 0
}

// writeFileAtomic writes data to path with mode 0600: to a temporary file in
// the same directory, synced, then renamed over path.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*") // mode 0600
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: make the rename durable
		d.Close()
	}
	return nil
}
