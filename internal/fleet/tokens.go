package fleet

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
)

// MaxTokenTTL is the longest TTL a join token may have.
const MaxTokenTTL = 365 * 24 * time.Hour

// maxDescription bounds a join token's description.
const maxDescription = 200

// ErrBadToken is a join token that is unknown, expired, revoked or whose
// secret or CA does not match: the joining edge is told no more.
var ErrBadToken = errors.New("the join token is unknown, expired or revoked (make one with `adit edge join-token create`)")

// tokenRecord is a join token as stored: its secret's sha256.
type tokenRecord struct {
	ID          string     `json:"id"`
	SecretHash  string     `json:"secret_hash"`
	Description string     `json:"description,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
}

func (r tokenRecord) public() control.JoinToken {
	return control.JoinToken{ID: r.ID, Description: r.Description, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt}
}

// CheckTokenRequest checks what an admin asks for.
func CheckTokenRequest(req control.CreateJoinTokenRequest) error {
	if req.TTL < 0 || req.TTL.Duration() > MaxTokenTTL {
		return control.Errorf(control.ErrInvalid, "join token ttl %ds: want 0 (until revoked) to %d seconds", req.TTL, int64(MaxTokenTTL/time.Second))
	}
	if len(req.Description) > maxDescription {
		return control.Errorf(control.ErrInvalid, "join token description: %d bytes, the limit is %d", len(req.Description), maxDescription)
	}
	for _, r := range req.Description {
		if !unicode.IsPrint(r) {
			return control.Errorf(control.ErrInvalid, "join token description: %q is not printable", r)
		}
	}
	return nil
}

// CreateToken makes a join token pinning the CA in caPEM and stores its
// hash, under a lease of ttl if ttl is not zero, so it vanishes when it
// expires.
func CreateToken(ctx context.Context, cli *clientv3.Client, caPEM []byte, req control.CreateJoinTokenRequest) (Token, control.JoinToken, error) {
	if err := CheckTokenRequest(req); err != nil {
		return Token{}, control.JoinToken{}, err
	}
	tok, err := NewToken(caPEM)
	if err != nil {
		return Token{}, control.JoinToken{}, err
	}
	now := time.Now().UTC().Round(0).Truncate(time.Second)
	rec := tokenRecord{ID: tok.ID, SecretHash: tok.SecretHash(), Description: req.Description, CreatedAt: now}
	var opts []clientv3.OpOption
	if req.TTL > 0 {
		exp := now.Add(req.TTL.Duration())
		rec.ExpiresAt = &exp
		lease, err := cli.Grant(ctx, int64(req.TTL))
		if err != nil {
			return Token{}, control.JoinToken{}, fmt.Errorf("fleet: join token: %w", err)
		}
		opts = append(opts, clientv3.WithLease(lease.ID))
	}
	val, _ := json.Marshal(rec)
	if _, err := cli.Put(ctx, store.JoinTokenKey(tok.ID), string(val), opts...); err != nil {
		return Token{}, control.JoinToken{}, fmt.Errorf("fleet: join token: %w", err)
	}
	return tok, rec.public(), nil
}

// ListTokens lists the join tokens that work, oldest first.
func ListTokens(ctx context.Context, cli *clientv3.Client) ([]control.JoinToken, error) {
	resp, err := cli.Get(ctx, store.JoinTokensPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("fleet: join tokens: %w", err)
	}
	ts := make([]control.JoinToken, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r tokenRecord
		if json.Unmarshal(kv.Value, &r) != nil || store.JoinTokenKey(r.ID) != string(kv.Key) {
			continue
		}
		ts = append(ts, r.public())
	}
	slices.SortFunc(ts, func(a, b control.JoinToken) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return ts, nil
}

// RevokeToken deletes a join token: it works no more.
func RevokeToken(ctx context.Context, cli *clientv3.Client, id string) error {
	if err := CheckTokenID(id); err != nil {
		return control.Errorf(control.ErrInvalid, "%v", err)
	}
	resp, err := cli.Delete(ctx, store.JoinTokenKey(id))
	if err != nil {
		return fmt.Errorf("fleet: revoke join token: %w", err)
	}
	if resp.Deleted == 0 {
		return control.Errorf(control.ErrNotFound, "no join token %s (see `adit edge join-token list`)", id)
	}
	return nil
}

// CheckToken reports whether tok is a join token that works here: its
// record exists and has its secret's hash, and it pins caPEM, this
// fleet's CA. Any failure is ErrBadToken.
func CheckToken(ctx context.Context, cli *clientv3.Client, tok Token, caPEM []byte) error {
	hash, err := CAHash(caPEM)
	if err != nil {
		return err
	}
	resp, err := cli.Get(ctx, store.JoinTokenKey(tok.ID))
	if err != nil {
		return fmt.Errorf("fleet: join token: %w", err)
	}
	if len(resp.Kvs) != 1 {
		return ErrBadToken
	}
	var r tokenRecord
	if json.Unmarshal(resp.Kvs[0].Value, &r) != nil {
		return ErrBadToken
	}
	if !tok.MatchesHash(r.SecretHash) || tok.CAHash != hash || (r.ExpiresAt != nil && time.Now().After(*r.ExpiresAt)) {
		return ErrBadToken
	}
	return nil
}
