// Package publictls gives the edge's public HTTPS listener its
// certificates (DESIGN.md, step 2 of a public request): ACME certificates
// for routed hostnames, ordered by certmagic from the configured CA and
// kept in etcd (so every edge of a fleet serves the same one, and an etcd
// lock lets one edge order a name at a time), and certificates operators
// bring (`adit cert add`, wildcards included), watched from etcd.
//
// Only routed hostnames get certificates: an order starts when a route is
// added (Manage) and at the first handshake for an exact route not yet
// covered; a handshake for any other name fails, with no default
// certificate to reveal other names, and starts no order. A wildcard
// route gets an ACME wildcard certificate when the edges serve DNS for its
// zone (Config.DNS01: package edgedns answers the DNS-01 challenge's TXT
// record), ordered when the route is added; otherwise it is served only
// with a brought certificate (ACME's HTTP-01 and TLS-ALPN-01 cannot prove
// a wildcard). Either way one certificate covers the wildcard, so no
// visitor can make the edge order a certificate per made-up subdomain. An
// ACME wildcard covers one label, as a certificate's wildcard does:
// "*.example.com" serves "a.example.com", not "a.b.example.com".
//
// Renewal starts when a third of a certificate's lifetime is left
// (certmagic's default); a failed order or renewal is retried with
// growing delays, logged with its cause, and recorded in etcd for `adit
// cert list`; the old certificate keeps serving meanwhile. OCSP responses
// are stapled when the certificate names a responder.
package publictls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zapcore"

	"github.com/adit-dev/adit/internal/logs"
	"github.com/adit-dev/adit/internal/store"
	"github.com/adit-dev/adit/internal/zapslog"
)

// LetsEncrypt is the default ACME directory: Let's Encrypt's production CA.
const LetsEncrypt = certmagic.LetsEncryptProductionCA

// Keys in etcd, under store.Prefix.
var (
	acmePrefix   = store.Prefix + "tls/acme/"   // certmagic's storage: certificates, keys, the ACME account
	lockPrefix   = store.Prefix + "tls/locks/"  // certmagic's locks (one order per name at a time)
	manualPrefix = store.Prefix + "tls/manual/" // brought certificates, by hostname
	statusPrefix = store.Prefix + "tls/status/" // the last failed order per hostname
)

// Config configures a Manager. The zero value orders from Let's Encrypt
// with validation on ports 80 and 443.
type Config struct {
	// CA is the ACME directory URL. If empty, LetsEncrypt.
	CA string
	// Email is the ACME account's contact address. If empty, none.
	Email string
	// CARoots, if set, are the only roots trusted for the ACME server's
	// own HTTPS (a private CA such as step-ca or Pebble). If nil, the
	// system's roots.
	CARoots *x509.CertPool
	// HTTPPort and TLSPort are the ports of the public HTTP and HTTPS
	// listeners, which answer the CA's HTTP-01 and TLS-ALPN-01
	// validations; ListenHost is their host. If zero, 80 and 443.
	HTTPPort, TLSPort int
	ListenHost        string
	// DisableHTTP01 and DisableTLSALPN01 turn one of the two challenge
	// types off (say, when port 80 is not reachable from the CA). If
	// both are false, the CA may use either.
	DisableHTTP01, DisableTLSALPN01 bool
	// DNS01, if set, orders the certificates of wildcard routes in the
	// names it serves by ACME DNS-01. If nil, a wildcard route needs a
	// brought certificate.
	DNS01 *DNS01
	// RenewCheckInterval is how often certificates are checked for
	// renewal. If zero, certmagic's default (10 minutes).
	RenewCheckInterval time.Duration
	// Logger receives the manager's logs. If nil, they are discarded.
	Logger *slog.Logger
}

// DNS01 proves names to the CA by ACME DNS-01 (package edgedns: every
// edge answers the challenge's TXT record from etcd).
type DNS01 struct {
	// Solver presents and cleans up the challenges (certmagic's
	// DNS01Solver over a libdns provider).
	Solver acmez.Solver
	// Serves says whether Solver can prove a name (it lies in a zone the
	// edges serve).
	Serves func(name string) bool
}

// Routes says which hostnames are routed. *controlserver.State implements it.
type Routes interface {
	// Route says whether host is routed, exactly or by a wildcard.
	Route(host string) (tunnelID string, ok bool)
	HasExactRoute(host string) bool
	ExactRoutes() []string
	WildcardRoutes() []string
}

// Manager serves certificates to the public HTTPS listener and keeps
// them current.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	cli     *clientv3.Client
	routes  Routes
	storage *etcdStorage
	cache   *certmagic.Cache
	magic   *certmagic.Config // handshakes, with on-demand orders
	eager   *certmagic.Config // routes' certificates, ordered up front, and renewals
	wild    *certmagic.Config // wildcard routes' certificates, by DNS-01; nil without Config.DNS01
	issuer  *certmagic.ACMEIssuer
	manual  *manualCerts

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New starts a Manager: it loads the brought certificates and watches
// them, and starts managing (loading from etcd, or ordering) the
// certificates of every exact route.
func New(ctx context.Context, cli *clientv3.Client, routes Routes, cfg Config) (*Manager, error) {
	log := logs.Component(cfg.Logger, "publictls")
	log = log.With("component", "publictls")
	m := &Manager{cfg: cfg, log: log, cli: cli, routes: routes,
		storage: newEtcdStorage(cli, acmePrefix, lockPrefix)}
	m.ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	zl := zapslog.New(log, zapslog.Options{MinLevel: zapcore.WarnLevel, SetMinLevel: true, Prefix: "certmagic: "})

	// Two configurations share the cache, the storage and the issuer's
	// settings: magic answers handshakes (on demand, behind decide), and
	// eager manages the certificates of routes (certmagic obtains nothing
	// up front for a configuration with on-demand TLS) and renews them.
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(c certmagic.Certificate) (*certmagic.Config, error) {
			if m.wild != nil && slices.ContainsFunc(c.Names, isWildcard) {
				return m.wild, nil
			}
			return m.eager, nil
		},
		RenewCheckInterval: cfg.RenewCheckInterval,
		OCSPCheckInterval:  cfg.RenewCheckInterval,
		Logger:             zl,
	})
	ca := cfg.CA
	if ca == "" {
		ca = LetsEncrypt
	}
	newConfig := func(onDemand *certmagic.OnDemandConfig, dns01 acmez.Solver) (*certmagic.Config, *certmagic.ACMEIssuer) {
		c := certmagic.New(m.cache, certmagic.Config{
			Storage:  m.storage,
			OnDemand: onDemand,
			OnEvent:  m.onEvent,
			Logger:   zl,
		})
		issuer := certmagic.NewACMEIssuer(c, certmagic.ACMEIssuer{
			CA:                      ca,
			Email:                   cfg.Email,
			Agreed:                  true,
			TrustedRoots:            cfg.CARoots,
			ListenHost:              cfg.ListenHost,
			AltHTTPPort:             orInt(cfg.HTTPPort, 80),
			AltTLSALPNPort:          orInt(cfg.TLSPort, 443),
			DisableHTTPChallenge:    cfg.DisableHTTP01,
			DisableTLSALPNChallenge: cfg.DisableTLSALPN01,
			DNS01Solver:             dns01, // if set, the only challenge the issuer takes
			Logger:                  zl,
		})
		c.Issuers = []certmagic.Issuer{issuer}
		return c, issuer
	}
	m.magic, m.issuer = newConfig(&certmagic.OnDemandConfig{DecisionFunc: m.decide}, nil)
	m.eager, _ = newConfig(nil, nil)
	if cfg.DNS01 != nil {
		m.wild, _ = newConfig(nil, cfg.DNS01.Solver)
	}

	var err error
	m.manual, err = loadManual(m.ctx, cli, log)
	if err != nil {
		m.cache.Stop()
		return nil, err
	}
	m.wg.Go(func() { m.manual.watch(m.ctx) })
	for _, host := range routes.ExactRoutes() {
		m.Manage(host)
	}
	for _, host := range routes.WildcardRoutes() {
		m.Manage(host)
	}
	return m, nil
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// Close stops renewals and watches.
func (m *Manager) Close() error {
	m.cancel()
	m.cache.Stop()
	m.wg.Wait()
	return m.storage.close()
}

// isWildcard says whether a certificate name or route is a wildcard.
func isWildcard(name string) bool { return strings.HasPrefix(name, "*.") }

// Manage starts keeping a certificate for host (a newly routed
// hostname): it is loaded from etcd, or ordered, in the background.
// Names a brought certificate covers are left alone, and so are
// wildcards unless Config.DNS01 serves them.
func (m *Manager) Manage(host string) {
	if m.manual.covers(host) {
		return
	}
	magic := m.eager
	if isWildcard(host) {
		if m.wild == nil || !m.cfg.DNS01.Serves(host) {
			return
		}
		magic = m.wild
	}
	if err := magic.ManageAsync(m.ctx, []string{host}); err != nil {
		m.log.Warn("cannot manage a certificate", "host", host, "err", err)
	}
}

// Unmanage stops renewing host's certificate (its route is gone). The
// certificate stays in etcd until it is deleted or expires.
func (m *Manager) Unmanage(host string) {
	m.cache.RemoveManaged([]certmagic.SubjectIssuer{{Subject: host}})
}

// decide is certmagic's on-demand gate: only an exact route may have a
// certificate ordered at a handshake.
func (m *Manager) decide(_ context.Context, name string) error {
	if !m.routes.HasExactRoute(name) {
		return fmt.Errorf("publictls: %q is not routed", name)
	}
	if m.manual.covers(name) {
		return fmt.Errorf("publictls: %q has a brought certificate", name)
	}
	return nil
}

// errNoCertificate fails a handshake for a name the edge has no
// certificate for: there is no default certificate.
var errNoCertificate = errors.New("publictls: no certificate for this server name")

// GetCertificate is the public listener's tls.Config.GetCertificate: a
// brought certificate for the name (exact, then wildcard), else the ACME
// one of an exact route (ordered now if need be), else nothing.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if slices.Contains(hello.SupportedProtos, "acme-tls/1") {
		return m.magic.GetCertificate(hello) // a TLS-ALPN-01 validation
	}
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		return nil, errNoCertificate
	}
	if c := m.manual.get(name); c != nil {
		return c, nil
	}
	if !m.routes.HasExactRoute(name) {
		if _, ok := m.routes.Route(name); ok && m.wild != nil {
			return m.wild.GetCertificate(hello) // a wildcard route's, from the cache only
		}
		return nil, errNoCertificate
	}
	return m.magic.GetCertificate(hello)
}

// TLSConfig is the public HTTPS listener's configuration: TLS 1.2 and 1.3
// with modern suites only, certificates by SNI, the ALPN protocols for
// HTTP/2, HTTP/1.1 and ACME's TLS-ALPN-01.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: m.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1", "acme-tls/1"},
		CipherSuites: []uint16{ // TLS 1.2 only; TLS 1.3's are all modern
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}

// HandleHTTPChallenge answers an ACME HTTP-01 validation request (from
// the challenge this edge or another one of the fleet presented) and
// reports whether r was one.
func (m *Manager) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	return m.issuer.HandleHTTPChallenge(w, r)
}

// HasCertificate says whether host has a certificate to serve now (the
// HTTP listener redirects such hosts to HTTPS).
func (m *Manager) HasCertificate(host string) bool {
	if m.manual.get(host) != nil {
		return true
	}
	if m.routes.HasExactRoute(host) {
		return len(m.cache.AllMatchingCertificates(host)) > 0
	}
	if _, ok := m.routes.Route(host); ok && m.wild != nil {
		return len(m.cache.AllMatchingCertificates(host)) > 0 // a wildcard route's
	}
	return false
}

// status is the last failed order or renewal of a hostname.
type status struct {
	Error string    `json:"error"`
	At    time.Time `json:"at"`
}

// onEvent records failed and successful orders in etcd for `adit cert
// list`, and says what still works.
func (m *Manager) onEvent(ctx context.Context, event string, data map[string]any) error {
	host, _ := data["identifier"].(string)
	if host == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	switch event {
	case "cert_failed":
		err, _ := data["error"].(error)
		msg := fmt.Sprint(data["error"])
		if err != nil {
			msg = err.Error()
		}
		renewal, _ := data["renewal"].(bool)
		if renewal {
			m.log.Error("renewing a certificate failed; the current one keeps serving until it expires; retrying with growing delays", "host", host, "err", msg)
		} else {
			m.log.Error("ordering a certificate failed; HTTPS for this hostname fails until it succeeds (plain HTTP still works); retrying with growing delays", "host", host, "err", msg)
		}
		b, _ := json.Marshal(status{Error: msg, At: time.Now().UTC()})
		if _, err := m.cli.Put(ctx, statusPrefix+host, string(b)); err != nil {
			m.log.Warn("recording a failed order", "host", host, "err", err)
		}
	case "cert_obtained":
		m.log.Info("certificate obtained", "host", host)
		if _, err := m.cli.Delete(ctx, statusPrefix+host); err != nil {
			m.log.Warn("clearing a failed order", "host", host, "err", err)
		}
	}
	return nil
}
