// Package accessverify checks the Access JWT an edge sends to the origin
// (Adit-Access-Jwt-Assertion, Cf-Access-Jwt-Assertion) against the edge's
// JWKS: the signature, the expiry, the audience and the issuer. The
// connector uses it
// for originRequest.access (required, teamName, audTag), as cloudflared
// does, so an origin stays closed even if an edge is misconfigured; any
// origin written in Go can use it too.
package accessverify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// CertsPath is where an edge serves its Access public keys on every
// hostname that has an Access application (and at /.adit/certs).
const CertsPath = "/cdn-cgi/access/certs"

// Config says which JWTs a Verifier accepts.
type Config struct {
	// TeamName is where the keys are: a hostname protected by Access
	// ("app.example.com", keys at https://app.example.com/cdn-cgi/access/certs)
	// or a base URL ("https://app.example.com"). Required.
	TeamName string
	// AUDTags are the application audience tags accepted; a JWT must name
	// one of them. Required.
	AUDTags []string
	// HTTPClient fetches the keys. If nil, one with a 15s timeout.
	HTTPClient *http.Client
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
}

// Verifier checks Access JWTs. It fetches the keys when it first needs
// them and again when a JWT names a key it does not have (a rotation). It
// keeps the JWTs it verified (the edge sends the same one for a session's
// requests for up to an hour), so a known JWT costs a map lookup, not a
// signature check.
type Verifier struct {
	cfg      Config
	keys     *oidc.RemoteKeySet
	teamHost string // the hostname of TeamName, lower-case

	mu       sync.Mutex
	verified map[string]*Claims // by JWT; at most maxVerified
}

// maxVerified bounds the verified JWTs a Verifier keeps; past it, it
// starts over.
const maxVerified = 4096

// CertsURL is the JWKS URL of a team name (see Config.TeamName).
func CertsURL(teamName string) (string, error) {
	if teamName == "" {
		return "", errors.New("accessverify: teamName is empty")
	}
	base := teamName
	if !strings.Contains(base, "://") {
		if strings.ContainsAny(base, "/?#@ ") || !strings.Contains(base, ".") && !strings.HasPrefix(base, "localhost") {
			return "", fmt.Errorf("accessverify: teamName %q: want the hostname of an Access application (app.example.com) or its https:// URL", teamName)
		}
		base = "https://" + base
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return "", fmt.Errorf("accessverify: teamName %q: not a hostname or http(s) URL", teamName)
	}
	return strings.TrimSuffix(u.Scheme+"://"+u.Host+u.Path, "/") + CertsPath, nil
}

// New returns a Verifier. ctx bounds its key fetches (use a long-lived one).
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	certs, err := CertsURL(cfg.TeamName)
	if err != nil {
		return nil, err
	}
	if len(cfg.AUDTags) == 0 {
		return nil, errors.New("accessverify: audTag is empty: name the Access application's audience tag")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	u, _ := url.Parse(certs)
	return &Verifier{
		cfg: cfg, keys: oidc.NewRemoteKeySet(oidc.ClientContext(ctx, cfg.HTTPClient), certs),
		teamHost: strings.ToLower(u.Hostname()), verified: make(map[string]*Claims),
	}, nil
}

// Claims are what a valid JWT says.
type Claims struct {
	// Issuer is the URL of the hostname the edge issued it for
	// (https://app.example.com).
	Issuer       string
	Audience     []string
	Email        string
	Groups       []string
	IdP          string
	ServiceToken string
	Expiry       time.Time
}

// maxToken bounds a JWT Verify parses.
const maxToken = 8 << 10

// Verify checks token and returns its claims: its signature by one of the
// team's keys, its expiry, an audience among Config.AUDTags, and an issuer
// naming the team's hostname (Config.TeamName).
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	return v.VerifyHost(ctx, token, "")
}

// VerifyHost is Verify for a request to host: the issuer may name host
// too. An edge issues a JWT for the hostname the visitor reached, so a
// TeamName shared by several applications, or a wildcard application,
// still checks, and a JWT issued for one hostname is refused at another.
func (v *Verifier) VerifyHost(ctx context.Context, token, host string) (*Claims, error) {
	if token == "" {
		return nil, errors.New("accessverify: no Access JWT")
	}
	if len(token) > maxToken {
		return nil, errors.New("accessverify: Access JWT too long")
	}
	v.mu.Lock()
	c := v.verified[token]
	v.mu.Unlock()
	if c == nil {
		var err error
		if c, err = v.verify(ctx, token); err != nil {
			return nil, err
		}
		v.mu.Lock()
		if len(v.verified) >= maxVerified {
			clear(v.verified)
		}
		v.verified[token] = c
		v.mu.Unlock()
	}
	if !v.cfg.Now().Before(c.Expiry) {
		return nil, fmt.Errorf("accessverify: the JWT expired at %s", c.Expiry.UTC().Format(time.RFC3339))
	}
	ok := false
	for _, a := range c.Audience {
		if slices.Contains(v.cfg.AUDTags, a) {
			ok = true
			break
		}
	}
	if !ok {
		return nil, errors.New("accessverify: the JWT is for another application (audience)")
	}
	if iss := issuerHost(c.Issuer); iss == "" || (iss != v.teamHost && iss != hostname(host)) {
		return nil, fmt.Errorf("accessverify: the JWT was issued by %q, not for %s (issuer)", limit(c.Issuer, 100), v.teamHost)
	}
	return c, nil
}

// verify checks token's signature and decodes its claims; its expiry,
// not-before time, audience and issuer are the caller's to check.
func (v *Verifier) verify(ctx context.Context, token string) (*Claims, error) {
	payload, err := v.keys.VerifySignature(ctx, token)
	if err != nil {
		return nil, fmt.Errorf("accessverify: %w", err)
	}
	var raw struct {
		Iss          string   `json:"iss"`
		Aud          audience `json:"aud"`
		Exp          *float64 `json:"exp"`
		Nbf          *float64 `json:"nbf"`
		Email        string   `json:"email"`
		Groups       []string `json:"groups"`
		IdP          string   `json:"idp"`
		ServiceToken string   `json:"service_token"`
	}
	if err := json.Unmarshal(payload, &raw); err != nil {
		return nil, fmt.Errorf("accessverify: claims: %w", err)
	}
	if raw.Exp == nil {
		return nil, errors.New("accessverify: the JWT has no expiry")
	}
	if raw.Nbf != nil && v.cfg.Now().Add(5*time.Second).Before(time.Unix(int64(*raw.Nbf), 0)) {
		return nil, errors.New("accessverify: the JWT is not valid yet")
	}
	return &Claims{Issuer: raw.Iss, Audience: raw.Aud, Email: raw.Email, Groups: raw.Groups, IdP: raw.IdP,
		ServiceToken: raw.ServiceToken, Expiry: time.Unix(int64(*raw.Exp), 0)}, nil
}

// issuerHost is the lower-case hostname of an issuer URL (http or https),
// or "".
func issuerHost(iss string) string {
	u, err := url.Parse(iss)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil || u.Path != "" && u.Path != "/" {
		return ""
	}
	return strings.ToLower(u.Hostname())
}

// hostname is host without a port, lower-case.
func hostname(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

func limit(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// audience is a JWT aud: a string or a list.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*a = audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return err
	}
	*a = l
	return nil
}

// Request checks the Access JWT of an HTTP request to an origin.
func (v *Verifier) Request(r *http.Request) (*Claims, error) {
	tok := r.Header.Get("Adit-Access-Jwt-Assertion")
	if tok == "" {
		tok = r.Header.Get("Cf-Access-Jwt-Assertion")
	}
	return v.VerifyHost(r.Context(), tok, r.Host)
}
