package ingress

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that what it accepts survives a
// yaml.Marshal round trip unchanged, and that whatever New accepts always matches a
// rule, since the last one is catch-all.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, "gitlab.widgetcorp.tech", "/")
	}
	f.Add([]byte(matchConfig), "a.b.example.com:443", "/api/x")
	f.Add([]byte("ingress: [{service: 'http_status:404'}]"), "", "")
	f.Add([]byte("originRequest: &a {connectTimeout: 5, <<: [*a]}\ningress: [{service: hello_world, originRequest: *a}]"), "x", "/")
	f.Fuzz(func(t *testing.T, data []byte, host, path string) {
		cfg, err := Parse(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "ingress: ") {
				t.Fatalf("error %q lacks the ingress: prefix", err)
			}
			return
		}
		roundTrip(t, cfg)
		in, err := New(cfg)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "ingress: ") {
				t.Fatalf("error %q lacks the ingress: prefix", err)
			}
			return
		}
		if len(in.Rules) == 0 || !in.Rules[len(in.Rules)-1].CatchAll() {
			t.Fatalf("New accepted rules whose last is not catch-all: %+v", in.Rules)
		}
		for _, r := range in.Rules[:len(in.Rules)-1] {
			if r.CatchAll() {
				t.Fatalf("New accepted catch-all rule %d before the last", r.Index+1)
			}
		}
		i, r := in.Match(host, path)
		if r == nil || i < 0 || i >= len(in.Rules) || r != &in.Rules[i] {
			t.Fatalf("Match(%q, %q) = %d, %v; want a rule", host, path, i, r)
		}
	})
}

// FuzzMatch checks hostname validation and matching: a valid exact hostname matches
// itself, a wildcard matches a subdomain but not its parent, and case and ports never
// change the result.
func FuzzMatch(f *testing.F) {
	for _, seed := range [][3]string{
		{"example.com", "example.com", "/"},
		{"*.example.com", "a.example.com:443", "/x"},
		{"*.example.com", "example.com", "/"},
		{"bücher.example", "xn--bcher-kva.example", "/"},
		{"*.xn--caf-dma.example", "a.café.example", "/"},
		{"*", "anything", ""},
		{"a.*.com", "a.b.com", "/"},
		{"example.com:80", "example.com", "/"},
		{"EXAMPLE.com", "[::1]:80", "/"},
		{"İ.example", "xn--i-9bb.example", "/p"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, hostname, reqHost, path string) {
		in, err := New(&Config{Ingress: []RuleConfig{
			{Hostname: hostname, Path: "^/p", Service: "http_status:200"},
			{Service: "http_status:404"},
		}})
		if err != nil {
			return
		}
		i, r := in.Match(reqHost, path)
		if r == nil || (i != 0 && i != 1) {
			t.Fatalf("Match(%q, %q) = %d, %v", reqHost, path, i, r)
		}
		if isASCII(reqHost) {
			if j, _ := in.Match(strings.ToUpper(reqHost), path); j != i {
				t.Fatalf("Match(%q) = %d but Match(upper case) = %d", reqHost, i, j)
			}
		}
		if !strings.ContainsAny(reqHost, ":[]") {
			if j, _ := in.Match(reqHost+":8443", path); j != i {
				t.Fatalf("Match(%q) = %d but with a port = %d", reqHost, i, j)
			}
		}
		switch {
		case hostname == "" || hostname == "*":
			if j, _ := in.Match(reqHost, "/p"); j != 0 {
				t.Fatalf("hostname %q, Match(%q, /p) = %d, want 0", hostname, reqHost, j)
			}
		case strings.HasPrefix(hostname, "*."):
			if j, _ := in.Match("x"+hostname[1:], "/p"); j != 0 {
				t.Fatalf("hostname %q does not match subdomain %q", hostname, "x"+hostname[1:])
			}
			if j, _ := in.Match(hostname[2:], "/p"); j != 1 {
				t.Fatalf("hostname %q matches its parent %q", hostname, hostname[2:])
			}
		default:
			if j, _ := in.Match(hostname, "/p"); j != 0 {
				t.Fatalf("hostname %q does not match itself", hostname)
			}
		}
	})
}

// FuzzParseService checks that ParseService never panics and that what it accepts is
// well formed: String gives back the input, and each kind carries its field.
func FuzzParseService(f *testing.F) {
	for _, s := range []string{
		"http://localhost:8000", "https://[::1]:8443/", "unix:/run/a.sock", "unix+tls:/x",
		"http_status:404", "hello_world", "tcp://db:5432", "ssh://host", "rdp://h", "smb://h",
		"bastion", "h2c://localhost:50051", "ws://a", "wss://a:1", "http://a/b", "http://a:0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		svc, err := ParseService(s)
		if err != nil {
			return
		}
		if svc.String() != s {
			t.Fatalf("String() = %q, want %q", svc.String(), s)
		}
		again, err := ParseService(s)
		if err != nil || !reflect.DeepEqual(svc, again) {
			t.Fatalf("second parse differs: %+v, %v", again, err)
		}
		switch svc.Kind {
		case KindHTTP, KindHTTPS, KindH2C, KindTCP, KindSSH, KindRDP, KindSMB:
			if svc.URL == nil || svc.URL.Hostname() == "" || svc.URL.Scheme != string(svc.Kind) || svc.URL.Path != "" {
				t.Fatalf("kind %s with URL %#v", svc.Kind, svc.URL)
			}
			if p := svc.URL.Port(); p != "" {
				if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
					t.Fatalf("kind %s with port %q", svc.Kind, p)
				}
			}
		case KindUnix, KindUnixTLS:
			if svc.SocketPath == "" || svc.URL != nil {
				t.Fatalf("unix service %+v", svc)
			}
		case KindHTTPStatus:
			if svc.Status < 100 || svc.Status > 599 {
				t.Fatalf("status %d", svc.Status)
			}
		case KindHelloWorld, KindBastion, KindSocksProxy:
		default:
			t.Fatalf("unknown kind %q", svc.Kind)
		}
	})
}
