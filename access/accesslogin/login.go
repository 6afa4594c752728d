// Package accesslogin is the terminal side of Access: `adit access login`
// gets a person's session JWT for an application through their browser,
// and the token store keeps it (under ADIT_HOME/access, files 0600) for
// `adit access token|curl|tcp|ssh`, which send it in the cf-access-token
// header.
//
// The login: listen on a loopback port, open the browser at the edge's
// /.adit/login with cli_callback naming that port and a random cli_state;
// the edge logs the person in (or finds their session) and redirects the
// browser to the callback with the token and the state, which must match.
// The edge sends tokens only to loopback callbacks.
package accesslogin

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Options configure Login.
type Options struct {
	// AppURL is the application's URL ("https://app.example.com/path").
	AppURL string
	// Open opens a URL in the person's browser. If nil, the URL is only
	// printed to Notify.
	Open func(url string) error
	// Notify receives the line asking the person to log in. If nil, none.
	Notify io.Writer
	// Timeout bounds the wait for the browser. If zero, 5 minutes.
	Timeout time.Duration
}

// Login runs the browser login for opts.AppURL and returns the session JWT.
func Login(ctx context.Context, opts Options) (string, error) {
	app, err := ParseAppURL(opts.AppURL)
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("access login: local callback: %w", err)
	}
	defer ln.Close()
	b := make([]byte, 16)
	rand.Read(b)
	state := hex.EncodeToString(b)
	type result struct {
		tok string
		err error
	}
	got := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 || q.Get("token") == "" {
			http.Error(w, "This login answer does not match the login the terminal started.", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html><head><meta charset="utf-8"><title>Logged in · adit</title></head>`+
			`<body style="font:16px system-ui;margin:4em auto;max-width:40em"><h1>Logged in</h1><p>You can close this window and go back to the terminal.</p></body></html>`)
		// The page goes out before Login returns and stops the server.
		http.NewResponseController(w).Flush()
		select {
		case got <- result{tok: q.Get("token")}:
		default:
		}
	})}
	go srv.Serve(ln)
	defer func() {
		// Let the callback's answer finish; the browser is waiting for it.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
	}()

	u := *app
	u.Path = "/.adit/login"
	u.RawQuery = url.Values{
		"redirect_url": {app.EscapedPath()},
		"cli_callback": {"http://" + ln.Addr().String() + "/callback"},
		"cli_state":    {state},
	}.Encode()
	loginURL := u.String()
	if opts.Notify != nil {
		fmt.Fprintf(opts.Notify, "Log in to %s in your browser:\n\n  %s\n\n", app.Host, loginURL)
	}
	if opts.Open != nil {
		if err := opts.Open(loginURL); err != nil && opts.Notify != nil {
			fmt.Fprintf(opts.Notify, "(could not open a browser: %v; open the URL above)\n", err)
		}
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-got:
		return r.tok, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	case <-t.C:
		return "", fmt.Errorf("access login: no login within %s", timeout)
	}
}

// ParseAppURL checks an application URL: http(s), a host, no user info.
// A URL without a scheme is https.
func ParseAppURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("access: %q is not an application URL like https://app.example.com", s)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	u.RawQuery, u.Fragment = "", ""
	return u, nil
}

// Store keeps session tokens in Dir, one file per application URL.
type Store struct {
	Dir string
}

// file is the token file of a hostname (without port) and path.
func (s Store) file(host, path string) string {
	name := strings.ToLower(host)
	if p := strings.Trim(path, "/"); p != "" {
		name += "_" + strings.NewReplacer("/", "_", "\\", "_", ".", "_").Replace(strings.ToLower(p))
	}
	name = strings.NewReplacer(":", "_", "/", "_", "\\", "_").Replace(name)
	return filepath.Join(s.Dir, name+".token")
}

// Save stores tok for the application at appURL.
func (s Store) Save(appURL, tok string) error {
	u, err := ParseAppURL(appURL)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("access: token store: %w", err)
	}
	f := s.file(u.Hostname(), u.Path)
	tmp := f + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("access: token store: %w", err)
	}
	return os.Rename(tmp, f)
}

// ErrNoToken is Load's error when there is no valid token.
var ErrNoToken = errors.New("access: no valid token")

// Load returns the stored token for appURL: the one saved for its path or
// the nearest parent, if it has not expired.
func (s Store) Load(appURL string, now time.Time) (string, error) {
	u, err := ParseAppURL(appURL)
	if err != nil {
		return "", err
	}
	p := strings.TrimSuffix(u.Path, "/")
	for {
		b, err := os.ReadFile(s.file(u.Hostname(), p))
		if err == nil {
			tok := strings.TrimSpace(string(b))
			if exp, ok := Expiry(tok); ok && now.Before(exp) {
				return tok, nil
			}
		}
		if p == "" {
			return "", fmt.Errorf("%w for %s: log in with `adit access login %s`", ErrNoToken, u.Host+u.Path, u.String())
		}
		p = p[:strings.LastIndexByte(p, '/')]
	}
}

// Expiry reads a JWT's exp without checking it (the edge checks).
func Expiry(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var c struct {
		Exp float64 `json:"exp"`
	}
	if json.Unmarshal(b, &c) != nil || c.Exp <= 0 || c.Exp > 1e11 {
		return time.Time{}, false
	}
	return time.Unix(int64(c.Exp), 0), true
}
