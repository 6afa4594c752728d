package access

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
)

// Signing keys: ECDSA P-256 (ES256), stored in etcd with their private
// part (etcd is the edges' shared trust root), rotated every
// Config.KeyRotation. A new key becomes the signer keyActivation after it
// is written, once every edge has it to verify with; an old key stays
// until its successor has been the signer for longer than the longest
// session, so every session it signed can still be checked.

// keyActivation is how long a new key waits before it signs.
const keyActivation = 5 * time.Second

// newKeyRecord makes a key with that ID, active from activeFrom.
func newKeyRecord(kid string, now, activeFrom time.Time) (keyRecord, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return keyRecord{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return keyRecord{}, err
	}
	return keyRecord{
		AccessKey:  control.AccessKey{KID: kid, Algorithm: string(jose.ES256), CreatedAt: now.UTC(), ActiveFrom: activeFrom.UTC()},
		PrivateKey: der,
	}, nil
}

// putKeyIfAbsent writes a new key under kid unless one is there; it
// returns the key and whether it wrote it.
func putKeyIfAbsent(ctx context.Context, cli *clientv3.Client, kid string, now, activeFrom time.Time) (keyRecord, int64, bool, error) {
	rec, err := newKeyRecord(kid, now, activeFrom)
	if err != nil {
		return keyRecord{}, 0, false, fmt.Errorf("access: new signing key: %w", err)
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return keyRecord{}, 0, false, err
	}
	key := store.AccessKeyKey(kid)
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val))).
		Commit()
	if err != nil {
		return keyRecord{}, 0, false, fmt.Errorf("access: writing a signing key: %w", err)
	}
	return rec, resp.Header.Revision, resp.Succeeded, nil
}

// periodKID is the ID of the key for the rotation period holding now:
// edges that rotate at once write the same key, and only one wins.
func periodKID(now time.Time, rotation time.Duration) string {
	return "p" + strconv.FormatInt(now.Unix()/int64(rotation/time.Second), 10)
}

// maintainKeys makes sure there is a signing key (at start) and rotates
// and retires keys; it runs at start and then every tick.
func (l *Layer) maintainKeys(ctx context.Context) error {
	now := l.now()
	snap := l.st.snap.Load()
	if len(snap.sorted) == 0 {
		// The first key signs at once: there is none to wait for.
		_, rev, _, err := putKeyIfAbsent(ctx, l.st.cli, periodKID(now, l.cfg.KeyRotation), now, now)
		if err != nil {
			return err
		}
		l.st.waitRev(ctx, rev)
		return nil
	}
	newest := snap.sorted[len(snap.sorted)-1]
	if now.Sub(newest.rec.ActiveFrom) >= l.cfg.KeyRotation {
		kid := periodKID(now, l.cfg.KeyRotation)
		if _, ok := snap.keys[kid]; !ok {
			if _, _, wrote, err := putKeyIfAbsent(ctx, l.st.cli, kid, now, now.Add(keyActivation)); err != nil {
				return err
			} else if wrote {
				l.log.Info("signing key rotated", "kid", kid)
			}
		}
	}
	// Retire keys whose successor has signed for longer than any session.
	for i := 0; i+1 < len(snap.sorted); i++ {
		next := snap.sorted[i+1]
		if now.Sub(next.rec.ActiveFrom) > control.MaxAccessSession+time.Hour {
			old := snap.sorted[i].rec.KID
			if _, err := l.st.cli.Delete(ctx, store.AccessKeyKey(old)); err != nil {
				return fmt.Errorf("access: retiring signing key %s: %w", old, err)
			}
			l.log.Info("signing key retired", "kid", old)
		}
	}
	return nil
}

// keyLoop runs maintainKeys every tick until ctx ends.
func (l *Layer) keyLoop(ctx context.Context) {
	tick := min(l.cfg.KeyRotation/4, time.Hour)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := l.maintainKeys(ctx); err != nil && ctx.Err() == nil {
				l.log.Warn("signing keys", "err", err)
			}
		}
	}
}

// buildJWKS is the public keys as a JSON Web Key Set.
func buildJWKS(keys []*signingKey) []byte {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.rec.KID, Algorithm: string(jose.ES256), Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		return []byte(`{"keys":[]}`)
	}
	return b
}

// claims are the claims of the JWTs the edge signs: sessions (a person)
// and service token assertions (a machine), with Cloudflare Access's
// names where it has them.
type claims struct {
	jwt.Claims
	Type   string   `json:"type"` // "app"
	Email  string   `json:"email,omitempty"`
	Groups []string `json:"groups,omitempty"`
	IdP    string   `json:"idp,omitempty"`
	App    string   `json:"app,omitempty"`
	// CommonName is the service token's client ID (Cloudflare's name).
	CommonName   string `json:"common_name,omitempty"`
	ServiceToken string `json:"service_token,omitempty"`

	kid string // the key that signed it (the session cache checks it is still there)
}

// sign signs c with k.
func sign(k *signingKey, c any) (string, error) {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.rec.KID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	return jwt.Signed(sig).Claims(c).Serialize()
}

var errNoKey = errors.New("access: signed with an unknown key")

// maxTokenLen bounds a JWT the edge parses.
const maxTokenLen = 8 << 10

// verify checks a JWT's signature against the snapshot's keys and its
// expiry, and decodes its claims into out; the caller checks the audience.
// It returns the ID of the key that signed it.
func verify(snap *snapshot, token string, now time.Time, out any) (string, error) {
	if len(token) > maxTokenLen {
		return "", errors.New("access: token too long")
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return "", err
	}
	if len(tok.Headers) != 1 {
		return "", errors.New("access: want one signature")
	}
	kid := tok.Headers[0].KeyID
	k := snap.keys[kid]
	if k == nil {
		return "", errNoKey
	}
	var std jwt.Claims
	if err := tok.Claims(&k.priv.PublicKey, &std, out); err != nil {
		return "", err
	}
	if std.Expiry == nil {
		return "", errors.New("access: token without expiry")
	}
	return kid, std.ValidateWithLeeway(jwt.Expected{Time: now}, 5*time.Second)
}
