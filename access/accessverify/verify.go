// Package accessverify checks the Access JWT an edge sends to the origin
// (Adit-Access-Jwt-Assertion, Cf-Access-Jwt-Assertion) against the edge's
// JWKS: the signature, the expiry and the audience. The connector uses it
// for originRequest.access (required, teamName, audTag), as cloudflared
// does, so an origin stays closed even if an edge is misconfigured; any
// origin written in Go can use it too.
package accessverify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
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
// them and again when a JWT names a key it does not have (a rotation).
type Verifier struct {
	cfg  Config
	keys *oidc.RemoteKeySet
}

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
	return &Verifier{cfg: cfg, keys: oidc.NewRemoteKeySet(oidc.ClientContext(ctx, cfg.HTTPClient), certs)}, nil
}

// Claims are what a valid JWT says.
type Claims struct {
	Audience     []string
	Email        string
	Groups       []string
	IdP          string
	ServiceToken string
	Expiry       time.Time
}

// maxToken bounds a JWT Verify parses.
const maxToken = 8 << 10

// Verify checks token and returns its claims.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if token == "" {
		return nil, errors.New("accessverify: no Access JWT")
	}
	if len(token) > maxToken {
		return nil, errors.New("accessverify: Access JWT too long")
	}
	payload, err := v.keys.VerifySignature(ctx, token)
	if err != nil {
		return nil, fmt.Errorf("accessverify: %w", err)
	}
	var raw struct {
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
	now := v.cfg.Now()
	if raw.Exp == nil {
		return nil, errors.New("accessverify: the JWT has no expiry")
	}
	exp := time.Unix(int64(*raw.Exp), 0)
	if !now.Before(exp) {
		return nil, fmt.Errorf("accessverify: the JWT expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if raw.Nbf != nil && now.Add(5*time.Second).Before(time.Unix(int64(*raw.Nbf), 0)) {
		return nil, errors.New("accessverify: the JWT is not valid yet")
	}
	ok := false
	for _, a := range raw.Aud {
		if slices.Contains(v.cfg.AUDTags, a) {
			ok = true
			break
		}
	}
	if !ok {
		return nil, errors.New("accessverify: the JWT is for another application (audience)")
	}
	return &Claims{Audience: raw.Aud, Email: raw.Email, Groups: raw.Groups, IdP: raw.IdP, ServiceToken: raw.ServiceToken, Expiry: exp}, nil
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
	return v.Verify(r.Context(), tok)
}
