package fleet

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// tokenPrefix starts every join token.
const tokenPrefix = "aditjoin"

// Token is a parsed join token.
type Token struct {
	CAHash string // hex sha256 of the fleet CA's SubjectPublicKeyInfo
	ID     string // 16 hex digits
	Secret string // 32 random bytes, base64url without padding
}

// String is the token as an admin passes it on.
func (t Token) String() string {
	return tokenPrefix + "." + t.CAHash + "." + t.ID + "." + t.Secret
}

// SecretHash is what is stored of the token: the hex sha256 of its secret.
func (t Token) SecretHash() string {
	sum := sha256.Sum256([]byte(t.Secret))
	return hex.EncodeToString(sum[:])
}

// MatchesHash reports, in constant time, whether the token's secret has
// the stored hash.
func (t Token) MatchesHash(hash string) bool {
	return subtle.ConstantTimeCompare([]byte(t.SecretHash()), []byte(hash)) == 1
}

// NewToken makes a token pinning the CA in caPEM.
func NewToken(caPEM []byte) (Token, error) {
	hash, err := CAHash(caPEM)
	if err != nil {
		return Token{}, err
	}
	var id [8]byte
	var secret [32]byte
	rand.Read(id[:])
	rand.Read(secret[:])
	return Token{CAHash: hash, ID: hex.EncodeToString(id[:]), Secret: base64.RawURLEncoding.EncodeToString(secret[:])}, nil
}

// ParseToken parses a join token, naming the part that is wrong.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if len(s) > 256 {
		return Token{}, errors.New("join token: too long")
	}
	parts := strings.Split(s, ".")
	if len(parts) != 4 || parts[0] != tokenPrefix {
		return Token{}, errors.New("join token: want aditjoin.<CA hash>.<id>.<secret> (from `adit edge join-token create`)")
	}
	t := Token{CAHash: parts[1], ID: parts[2], Secret: parts[3]}
	if len(t.CAHash) != 64 || !isLowerHex(t.CAHash) {
		return Token{}, errors.New("join token: the CA hash is not 64 hex digits")
	}
	if err := CheckTokenID(t.ID); err != nil {
		return Token{}, err
	}
	if b, err := base64.RawURLEncoding.DecodeString(t.Secret); err != nil || len(b) != 32 {
		return Token{}, errors.New("join token: the secret is not 32 bytes of base64url")
	}
	return t, nil
}

// CheckTokenID checks a join token ID: 16 lower-case hex digits.
func CheckTokenID(id string) error {
	if len(id) != 16 || !isLowerHex(id) {
		return fmt.Errorf("join token: ID %q is not 16 hex digits", id)
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// CAHash is the hex sha256 of the SubjectPublicKeyInfo of the first
// certificate in caPEM, as kubeadm pins a CA.
func CAHash(caPEM []byte) (string, error) {
	block, _ := pem.Decode(caPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", errors.New("fleet: the CA holds no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("fleet: the CA certificate: %w", err)
	}
	return certHash(cert), nil
}

func certHash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}
