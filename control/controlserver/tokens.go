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
	"slices"
	"strings"
	"time"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TokenPrefix starts every API token adit generates.
const TokenPrefix = "adit_"

// maxTokenLen bounds the tokens CheckToken looks up.
const maxTokenLen = 512

// tokenRecord is an API token as stored, under the sha256 of the token. A
// revoked token keeps its record, marked, so that no edge registers it again
// from an old admin.token file.
type tokenRecord struct {
	Name      string     `json:"name"`
	Edge      string     `json:"edge,omitempty"` // the node that registered it from its admin.token file
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

func (r tokenRecord) info(hashHex string) control.APIToken {
	return control.APIToken{ID: hashHex[:control.TokenIDLen], Name: r.Name, Edge: r.Edge, CreatedAt: r.CreatedAt, RevokedAt: r.RevokedAt}
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
// registered, named control.DefaultTokenName and tagged with this edge's
// node. If the file does not exist, it generates a token, writes it there
// (mode 0600, atomically) and registers it: created is then true. Only the
// token's sha256 is stored in etcd.
//
// Every other live token this node registered from its file before is
// revoked, so a replaced or deleted admin.token file leaves no old token
// working. A token in the file that was revoked (by a rotation) stays
// revoked: it is logged, and the edge runs on.
func (s *Service) EnsureAdminToken(ctx context.Context, path string) (created bool, err error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		token := strings.TrimSpace(string(data))
		if token == "" {
			return false, fmt.Errorf("control: admin token file %s is empty; delete it to get a new token", path)
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			s.log.Warn("the admin token file is readable by other users; chmod 600 it", "path", path, "mode", fi.Mode().Perm().String())
		}
		return false, s.adoptAdminToken(ctx, token, path)
	case errors.Is(err, fs.ErrNotExist):
		token := NewToken()
		// The file first: if registering fails, the next start registers it.
		if err := writeFileAtomic(path, []byte(token+"\n")); err != nil {
			return false, fmt.Errorf("control: admin token: %w", err)
		}
		if err := s.adoptAdminToken(ctx, token, path); err != nil {
			return false, err
		}
		s.log.Info("admin API token created", "path", path, "id", control.TokenID(token))
		return true, nil
	default:
		return false, fmt.Errorf("control: admin token: %w", err)
	}
}

// adoptAdminToken registers the token of this node's admin.token file and
// revokes the ones the node registered before.
func (s *Service) adoptAdminToken(ctx context.Context, token, path string) error {
	rec := tokenRecord{Name: control.DefaultTokenName, Edge: s.info.Node, CreatedAt: now()}
	key := store.TokenKey(tokenHash(token))
	val, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("control: register token: %w", err)
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return etcdError("register token", err)
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		var old tokenRecord
		if len(kvs) == 1 && json.Unmarshal(kvs[0].Value, &old) == nil && old.RevokedAt != nil {
			s.log.Warn("the token in the admin token file was revoked; use the rotated token, or delete the file and restart for a new one",
				"path", path, "id", control.TokenID(token), "revoked_at", old.RevokedAt)
			return nil
		}
	}
	if s.info.Node == "" {
		return nil
	}
	revoked, err := s.revokeWhere(ctx, "revoke older admin tokens", func(hash string, r tokenRecord) bool {
		return r.Edge == s.info.Node && r.Name == control.DefaultTokenName && store.TokenKey(hash) != key
	}, nil)
	for _, t := range revoked {
		s.log.Info("an older admin token of this edge revoked", "id", t.ID, "created_at", t.CreatedAt)
	}
	return err
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

// CheckToken reports whether token is a registered API token that was not
// revoked. It looks the token up by its hash, so it leaks nothing through
// timing; an etcd failure is logged and reported as false. It reads etcd on
// every call, so a revocation applies on every edge at once.
func (s *Service) CheckToken(ctx context.Context, token string) bool {
	if token == "" || len(token) > maxTokenLen {
		return false
	}
	return s.checkTokenHash(ctx, tokenHash(token))
}

// checkTokenHash is CheckToken given the token's hex sha256.
func (s *Service) checkTokenHash(ctx context.Context, hash string) bool {
	resp, err := s.cli.Get(ctx, store.TokenKey(hash))
	if err != nil {
		s.log.Error("cannot check an API token", "err", err)
		return false
	}
	if len(resp.Kvs) != 1 {
		return false
	}
	var rec tokenRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		s.log.Error("unreadable API token record", "key", string(resp.Kvs[0].Key), "err", err)
		return false
	}
	return rec.RevokedAt == nil
}

// storedToken is a token record with its key's hash and revision.
type storedToken struct {
	hash string
	rec  tokenRecord
	rev  int64 // ModRevision
}

// tokens reads the token records under prefix (a prefix of a hash).
func (s *Service) tokens(ctx context.Context, hashPrefix string) ([]storedToken, error) {
	resp, err := s.cli.Get(ctx, store.TokenKey(hashPrefix), clientv3.WithPrefix())
	if err != nil {
		return nil, etcdError("list tokens", err)
	}
	out := make([]storedToken, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		st := storedToken{hash: strings.TrimPrefix(string(kv.Key), store.TokensPrefix), rev: kv.ModRevision}
		if len(st.hash) < control.TokenIDLen || json.Unmarshal(kv.Value, &st.rec) != nil {
			s.log.Warn("skipping an unreadable token record", "key", string(kv.Key))
			continue
		}
		out = append(out, st)
	}
	return out, nil
}

// ListTokens returns the API tokens, oldest first; revoked ones too if
// includeRevoked.
func (s *Service) ListTokens(ctx context.Context, includeRevoked bool) ([]control.APIToken, error) {
	all, err := s.tokens(ctx, "")
	if err != nil {
		return nil, err
	}
	out := []control.APIToken{}
	for _, t := range all {
		if t.rec.RevokedAt == nil || includeRevoked {
			out = append(out, t.rec.info(t.hash))
		}
	}
	slices.SortStableFunc(out, func(a, b control.APIToken) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// revokeWhere revokes, in one transaction, every live token match selects,
// with extra operations (a new token's put) in the same transaction. It
// retries while other writers change what it read.
func (s *Service) revokeWhere(ctx context.Context, op string, match func(hash string, r tokenRecord) bool, extra []clientv3.Op) ([]control.APIToken, error) {
	for range maxTxnAttempts {
		all, err := s.tokens(ctx, "")
		if err != nil {
			return nil, err
		}
		var (
			cmps    []clientv3.Cmp
			ops     = slices.Clone(extra)
			revoked []control.APIToken
			at      = now()
		)
		for _, t := range all {
			if t.rec.RevokedAt != nil || !match(t.hash, t.rec) {
				continue
			}
			key := store.TokenKey(t.hash)
			t.rec.RevokedAt = &at
			val, err := json.Marshal(t.rec)
			if err != nil {
				return nil, fmt.Errorf("control: %s: %w", op, err)
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", t.rev))
			ops = append(ops, clientv3.OpPut(key, string(val)))
			revoked = append(revoked, t.rec.info(t.hash))
		}
		if len(ops) == 0 {
			return nil, nil
		}
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return nil, etcdError(op, err)
		}
		if resp.Succeeded {
			return revoked, nil
		}
	}
	return nil, fmt.Errorf("control: %s: the tokens kept changing under %d attempts; try again", op, maxTxnAttempts)
}

// RotateToken makes a new API token named name (if empty,
// control.DefaultTokenName) and revokes every live token of that name in
// the same transaction, so the old ones stop working on every edge at once.
// The new token is returned this once; only its hash is stored.
func (s *Service) RotateToken(ctx context.Context, name string) (control.RotateTokenResponse, error) {
	if name == "" {
		name = control.DefaultTokenName
	}
	if err := control.ValidateTokenName(name); err != nil {
		return control.RotateTokenResponse{}, err
	}
	token := NewToken()
	hash := tokenHash(token)
	rec := tokenRecord{Name: name, CreatedAt: now()}
	val, err := json.Marshal(rec)
	if err != nil {
		return control.RotateTokenResponse{}, fmt.Errorf("control: rotate token: %w", err)
	}
	revoked, err := s.revokeWhere(ctx, "rotate token", func(_ string, r tokenRecord) bool { return r.Name == name },
		[]clientv3.Op{clientv3.OpPut(store.TokenKey(hash), string(val))})
	if err != nil {
		return control.RotateTokenResponse{}, err
	}
	if revoked == nil {
		revoked = []control.APIToken{}
	}
	ids := make([]string, len(revoked))
	for i, t := range revoked {
		ids[i] = t.ID
	}
	s.log.Info("api token rotated", "name", name, "id", hash[:control.TokenIDLen], "revoked", ids)
	return control.RotateTokenResponse{Token: token, Info: rec.info(hash), Revoked: revoked}, nil
}

// RevokeToken revokes the API token with that ID (control.TokenID).
// callerID, if set, is the ID of the token the request is made with
// (directly or through a dashboard session): it cannot revoke itself
// (ErrConflict), so nobody locks themselves out by mistake. Revoking a
// revoked token is not an error.
func (s *Service) RevokeToken(ctx context.Context, id, callerID string) error {
	if len(id) != control.TokenIDLen || strings.Trim(id, "0123456789abcdef") != "" {
		return control.Errorf(control.ErrInvalid, "token ID %q: want %d lower-case hex digits (see `adit admin token list`)", id, control.TokenIDLen)
	}
	if callerID != "" && callerID == id {
		return control.Errorf(control.ErrConflict, "token %s is the one this request is made with; rotate it instead (`adit admin token rotate`)", id)
	}
	found, err := s.tokens(ctx, id)
	if err != nil {
		return err
	}
	if len(found) == 0 {
		return control.Errorf(control.ErrNotFound, "no API token with ID %s", id)
	}
	revoked, err := s.revokeWhere(ctx, "revoke token", func(hash string, _ tokenRecord) bool { return strings.HasPrefix(hash, id) }, nil)
	for _, t := range revoked {
		s.log.Info("api token revoked", "id", t.ID, "name", t.Name)
	}
	return err
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
