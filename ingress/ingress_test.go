package ingress

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func mustNew(t testing.TB, yml string) *Ingress {
	t.Helper()
	cfg, err := Parse([]byte(yml))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	in, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return in
}

// roundTrip checks that yaml.Marshal of cfg parses back to an equal Config.
func roundTrip(t testing.TB, cfg *Config) {
	t.Helper()
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	again, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(Marshal(cfg)): %v\n%s", err, out)
	}
	if !reflect.DeepEqual(cfg, again) {
		t.Fatalf("round trip changed the config:\n got %#v\nwant %#v\nyaml:\n%s", again, cfg, out)
	}
}

func TestGoodConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yml")
	if len(files) == 0 {
		t.Fatal("no testdata/good/*.yml")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			cfg, err := Load(file)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			in, err := New(cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if last := &in.Rules[len(in.Rules)-1]; !last.CatchAll() {
				t.Errorf("last rule %d is not catch-all", last.Index+1)
			}
			if i, r := in.Match("no-such-host.invalid", "/"); r == nil || i != len(in.Rules)-1 {
				t.Errorf("Match(unknown host) = %d, %v; want the last rule %d", i, r, len(in.Rules)-1)
			}
			roundTrip(t, cfg)
		})
	}
}

func TestBadConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yml")
	if len(files) == 0 {
		t.Fatal("no testdata/bad/*.yml")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("first line %q is not \"# want: <error substring>\"", first)
			}
			cfg, err := Load(file)
			if err == nil {
				_, err = New(cfg)
			}
			if err == nil {
				t.Fatalf("got no error, want one containing %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("got error %q\nwant it to contain %q", err, want)
			}
			if !strings.HasPrefix(err.Error(), "ingress: ") {
				t.Errorf("error %q does not start with \"ingress: \"", err)
			}
		})
	}
}

func TestLoadNamesFile(t *testing.T) {
	_, err := Load("testdata/bad/unknown-rule-key.yml")
	want := `ingress: testdata/bad/unknown-rule-key.yml: rule 2: unknown key "servce" (line 7)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	if _, err := Load("testdata/does-not-exist.yml"); err == nil || !strings.HasPrefix(err.Error(), "ingress: read config: ") {
		t.Errorf("got %v, want a read config error", err)
	}
}

func TestOriginRequestInheritance(t *testing.T) {
	cfg, err := Load("testdata/good/origin-request.yml")
	if err != nil {
		t.Fatal(err)
	}
	in, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r0, r1, r4 := in.Rules[0].Origin, in.Rules[1].Origin, in.Rules[4].Origin
	tests := []struct {
		name      string
		got, want any
	}{
		{"rule 1 overrides connectTimeout", r0.ConnectTimeout, 2 * time.Second},
		{"rule 1 inherits tlsTimeout", r0.TLSTimeout, 5 * time.Second},
		{"rule 1 inherits tcpKeepAlive", r0.TCPKeepAlive, time.Minute},
		{"rule 1 inherits keepAliveConnections", r0.KeepAliveConnections, 50},
		{"rule 1 inherits keepAliveTimeout", r0.KeepAliveTimeout, 90 * time.Second},
		{"rule 1 overrides httpHostHeader", r0.HTTPHostHeader, "internal.corp"},
		{"rule 1 sets originServerName", r0.OriginServerName, "internal.corp"},
		{"rule 1 sets caPool", r0.CAPool, "/etc/cloudflared/corp-ca.pem"},
		{"rule 1 sets http2Origin", r0.HTTP2Origin, true},
		{"rule 1 inherits ipRules", len(r0.IPRules), 2},
		{"rule 1 inherits ipRules ports", r0.IPRules[0].Ports, []int{80, 443}},
		{"rule 2 inherits connectTimeout", r1.ConnectTimeout, 10 * time.Second},
		{"rule 2 inherits httpHostHeader", r1.HTTPHostHeader, "default.internal"},
		{"rule 2 sets disableChunkedEncoding", r1.DisableChunkedEncoding, true},
		{"rule 2 keepAliveConnections 0 means the default", r1.KeepAliveConnections, DefaultKeepAliveConnections},
		{"rule 2 access", r1.Access, Access{TeamName: "widgetcorp", AUDTag: []string{"aud1", "aud2"}}},
		{"rule 5 inherits everything", r4.ConnectTimeout, 10 * time.Second},
		{"rule 5 proxyAddress", r4.ProxyAddress, "127.0.0.1"},
		{"rule 4 proxyType", in.Rules[3].Origin.ProxyType, "socks"},
		{"rule 4 proxyPort", in.Rules[3].Origin.ProxyPort, 1080},
		{"rule 3 bastionMode", in.Rules[2].Origin.BastionMode, true},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestRuleOverridesBackToFalse(t *testing.T) {
	in := mustNew(t, `
originRequest: {noTLSVerify: true, httpHostHeader: a.internal}
ingress:
  - hostname: a.example.com
    service: https://localhost:1
    originRequest: {noTLSVerify: false, httpHostHeader: ""}
  - service: https://localhost:2
`)
	if got := in.Rules[0].Origin.NoTLSVerify; got {
		t.Errorf("rule 1 noTLSVerify: got %v, want false (set in the rule)", got)
	}
	if got := in.Rules[0].Origin.HTTPHostHeader; got != "" {
		t.Errorf("rule 1 httpHostHeader: got %q, want empty (set in the rule)", got)
	}
	if got := in.Rules[1].Origin.NoTLSVerify; !got {
		t.Errorf("rule 2 noTLSVerify: got %v, want true (inherited)", got)
	}
}

func TestDefaults(t *testing.T) {
	in := mustNew(t, "ingress:\n  - service: http://localhost:8080\n")
	want := OriginRequest{
		ConnectTimeout:       30 * time.Second,
		TLSTimeout:           10 * time.Second,
		TCPKeepAlive:         30 * time.Second,
		KeepAliveConnections: 1024,
		KeepAliveTimeout:     90 * time.Second,
		ProxyAddress:         "127.0.0.1",
	}
	if got := in.Rules[0].Origin; !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if got := (OriginRequest{}).WithDefaults(); !reflect.DeepEqual(got, want) {
		t.Errorf("WithDefaults: got %+v\nwant %+v", got, want)
	}
}

func TestDurations(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"30s", 30 * time.Second},
		{"1m30s", 90 * time.Second},
		{"500ms", 500 * time.Millisecond},
		{"45", 45 * time.Second},
		{"'2h'", 2 * time.Hour},
	}
	for _, tt := range tests {
		cfg, err := Parse([]byte("originRequest:\n  connectTimeout: " + tt.in + "\n"))
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if got := time.Duration(*cfg.OriginRequest.ConnectTimeout); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestTopLevel(t *testing.T) {
	cfg, err := Load("testdata/good/top-level.yml")
	if err != nil {
		t.Fatal(err)
	}
	three := 3
	want := &Config{
		Tunnel:            "my-tunnel",
		CredentialsFile:   "/etc/cloudflared/my-tunnel.json",
		OriginCert:        "/etc/cloudflared/cert.pem",
		Protocol:          "quic",
		LogLevel:          "info",
		TransportLogLevel: "warn",
		LogFile:           "/var/log/cloudflared.log",
		LogDirectory:      "/var/log/cloudflared",
		Metrics:           "localhost:2000",
		NoAutoupdate:      true,
		AutoupdateFreq:    Duration(24 * time.Hour),
		EdgeIPVersion:     "4",
		EdgeBindAddress:   "192.0.2.10",
		Region:            "us",
		GracePeriod:       Duration(45 * time.Second),
		Retries:           &three,
		HAConnections:     4,
		PIDFile:           "/run/cloudflared.pid",
		Tag:               []string{"env=prod", "team=web"},
		WarpRouting: WarpRouting{Enabled: true, ConnectTimeout: Duration(5 * time.Second),
			TCPKeepAlive: Duration(30 * time.Second), MaxActiveFlows: 1000},
		Ingress: []RuleConfig{
			{Hostname: "web.example.com", Service: "http://localhost:8080"},
			{Service: "http_status:404"},
		},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestLegacyForms(t *testing.T) {
	tests := []struct {
		name, yml string
		want      string // service of the single rule
	}{
		{"url", "url: http://localhost:8000\n", "http://localhost:8000"},
		{"url without scheme", "url: localhost:8000\n", "http://localhost:8000"},
		{"hello-world", "hello-world: true\n", "hello_world"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := mustNew(t, tt.yml)
			if len(in.Rules) != 1 || in.Rules[0].Service.String() != tt.want || !in.Rules[0].CatchAll() {
				t.Errorf("got %+v, want one catch-all rule for %s", in.Rules, tt.want)
			}
		})
	}
}

func TestAnchors(t *testing.T) {
	cfg, err := Load("testdata/good/anchors.yml")
	if err != nil {
		t.Fatal(err)
	}
	in, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []time.Duration{5 * time.Second, 7 * time.Second, 5 * time.Second} {
		o := in.Rules[i].Origin
		if o.ConnectTimeout != want || !o.NoTLSVerify {
			t.Errorf("rule %d: got connectTimeout %v noTLSVerify %v, want %v true", i+1, o.ConnectTimeout, o.NoTLSVerify, want)
		}
	}
}

func TestCyclicAliasesTerminate(t *testing.T) {
	for _, yml := range []string{
		"ingress: &a [*a]\n",
		"originRequest: &a {<<: *a}\n",
		"a: &a [*a, *a]\n",
	} {
		if _, err := Parse([]byte(yml)); err == nil {
			t.Errorf("Parse(%q): got no error, want one", yml)
		}
	}
}

func TestEmpty(t *testing.T) {
	for _, yml := range []string{"", "\n", "# only a comment\n", "---\n", "~\n"} {
		cfg, err := Parse([]byte(yml))
		if err != nil || !reflect.DeepEqual(cfg, &Config{}) {
			t.Errorf("Parse(%q) = %+v, %v; want an empty Config", yml, cfg, err)
		}
	}
}

func TestNewValidatesCodeBuiltConfig(t *testing.T) {
	neg := Duration(-time.Second)
	bigPort := 70000
	socks5 := "socks5"
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative global duration", Config{OriginRequest: OriginRequestConfig{TLSTimeout: &neg},
			Ingress: []RuleConfig{{Service: "http_status:404"}}},
			"ingress: originRequest: tlsTimeout: must not be negative"},
		{"rule proxy port", Config{Ingress: []RuleConfig{{Service: "bastion", OriginRequest: OriginRequestConfig{ProxyPort: &bigPort}}}},
			"ingress: rule 1: originRequest: proxyPort: 70000 is not a port"},
		{"rule proxy type", Config{Ingress: []RuleConfig{{Service: "socks-proxy", OriginRequest: OriginRequestConfig{ProxyType: &socks5}}}},
			`ingress: rule 1: originRequest: proxyType: "socks5" is not a proxy type`},
		{"ip rule", Config{Ingress: []RuleConfig{{Service: "bastion", OriginRequest: OriginRequestConfig{IPRules: []IPRule{{Prefix: "10.0.0.0/8", Ports: []int{0}}}}}}},
			"ingress: rule 1: originRequest: ipRules[1]: ports: 0 is not a port"},
		{"hello-world and ingress", Config{HelloWorld: true, Ingress: []RuleConfig{{Service: "http_status:404"}}},
			"both hello-world and ingress rules are set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(&tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := New(nil); err == nil {
		t.Error("New(nil): got no error")
	}
}

func TestParseService(t *testing.T) {
	tests := []struct {
		in         string
		kind       Kind
		url        string
		status     int
		socketPath string
		err        string
	}{
		{in: "http://localhost:8000", kind: KindHTTP, url: "http://localhost:8000"},
		{in: "http://localhost", kind: KindHTTP, url: "http://localhost"},
		{in: "HTTP://LocalHost:80/", kind: KindHTTP, url: "http://LocalHost:80"},
		{in: "https://10.0.0.1:8443", kind: KindHTTPS, url: "https://10.0.0.1:8443"},
		{in: "ws://localhost:9000", kind: KindHTTP, url: "http://localhost:9000"},
		{in: "wss://localhost:9443", kind: KindHTTPS, url: "https://localhost:9443"},
		{in: "http://[::1]:8080", kind: KindHTTP, url: "http://[::1]:8080"},
		{in: "h2c://localhost:50051", kind: KindH2C, url: "h2c://localhost:50051"},
		{in: "tcp://localhost:5432", kind: KindTCP, url: "tcp://localhost:5432"},
		{in: "ssh://localhost", kind: KindSSH, url: "ssh://localhost:22"},
		{in: "ssh://localhost:2222", kind: KindSSH, url: "ssh://localhost:2222"},
		{in: "rdp://10.0.0.7", kind: KindRDP, url: "rdp://10.0.0.7:3389"},
		{in: "smb://fs", kind: KindSMB, url: "smb://fs:445"},
		{in: "unix:/run/app.sock", kind: KindUnix, socketPath: "/run/app.sock"},
		{in: "unix+tls:/run/app.sock", kind: KindUnixTLS, socketPath: "/run/app.sock"},
		{in: "http_status:404", kind: KindHTTPStatus, status: 404},
		{in: "http_status:100", kind: KindHTTPStatus, status: 100},
		{in: "hello_world", kind: KindHelloWorld},
		{in: "hello-world", kind: KindHelloWorld},
		{in: "bastion", kind: KindBastion},
		{in: "socks-proxy", kind: KindSocksProxy},
		{in: "", err: "required"},
		{in: "localhost:8000", err: "not a service"},
		{in: "ftp://localhost", err: `unknown scheme "ftp"`},
		{in: "http://", err: "has no host"},
		{in: "http://:8080", err: "has no host"},
		{in: "http://localhost:", err: "empty port"},
		{in: "http://localhost:0", err: "port 0 is not from 1 to 65535"},
		{in: "http://localhost:8080/api", err: "must not have a path"},
		{in: "http://localhost:8080?a=b", err: "must not have a query"},
		{in: "http://localhost:8080#x", err: "must not have a fragment"},
		{in: "http://user:pw@localhost", err: "must not carry a user"},
		{in: "http://local host", err: "invalid character"},
		{in: "http_status:99", err: "status code from 100 to 599"},
		{in: "http_status:600", err: "status code from 100 to 599"},
		{in: "http_status:abc", err: "status code from 100 to 599"},
		{in: "unix:", err: "want a socket path"},
		{in: "tcp://localhost", err: "needs a port"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			svc, err := ParseService(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %+v, %v; want an error containing %q", svc, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			var gotURL string
			if svc.URL != nil {
				gotURL = svc.URL.String()
			}
			if svc.Kind != tt.kind || gotURL != tt.url || svc.Status != tt.status || svc.SocketPath != tt.socketPath {
				t.Errorf("got kind %q url %q status %d socket %q; want %q %q %d %q",
					svc.Kind, gotURL, svc.Status, svc.SocketPath, tt.kind, tt.url, tt.status, tt.socketPath)
			}
			if svc.String() != tt.in {
				t.Errorf("String() = %q, want %q", svc.String(), tt.in)
			}
		})
	}
}

func TestFromURL(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "http://localhost:8000", want: "http://localhost:8000"},
		{in: "localhost:8000", want: "http://localhost:8000"},
		{in: "https://localhost:8443", want: "https://localhost:8443"},
		{in: "unix:/run/app.sock", want: "unix:/run/app.sock"},
		{in: "hello_world", want: "hello_world"},
		{in: "http_status:204", want: "http_status:204"},
		{in: "", err: "ingress: url: service is required"},
		{in: "http://localhost:8000/app", err: `ingress: url: service "http://localhost:8000/app": must not have a path`},
		{in: "nonsense", want: "http://nonsense"},
		{in: "ftp://files", err: `ingress: url: service "ftp://files": unknown scheme "ftp"`},
		{in: "localhost:8000/app", err: `ingress: url: service "http://localhost:8000/app": must not have a path`},
		{in: "unix:", err: `ingress: url: service "unix:": want a socket path`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			in, err := FromURL(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v, want an error containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(in.Rules) != 1 || !in.Rules[0].CatchAll() || in.Rules[0].Service.String() != tt.want {
				t.Errorf("got %+v, want one catch-all rule for %s", in.Rules, tt.want)
			}
			if in.Rules[0].Origin.ConnectTimeout != DefaultConnectTimeout {
				t.Errorf("connectTimeout: got %v, want the default", in.Rules[0].Origin.ConnectTimeout)
			}
		})
	}
}

const matchConfig = `
ingress:
  - hostname: static.example.com
    path: \.(jpg|css)$
    service: http://localhost:8001
  - hostname: static.example.com
    service: http://localhost:8000
  - hostname: "*.example.com"
    path: ^/api/
    service: http://localhost:8002
  - hostname: "*.example.com"
    service: http://localhost:8003
  - hostname: bücher.example.org
    service: http://localhost:8004
  - hostname: "*.xn--caf-dma.example.org"
    service: http://localhost:8005
  - path: ^/healthz$
    service: http_status:200
  - hostname: "*"
    service: http_status:404
`

func TestMatch(t *testing.T) {
	in := mustNew(t, matchConfig)
	tests := []struct {
		name, host, path string
		want             int
	}{
		{"exact host, path rule", "static.example.com", "/img/a.jpg", 0},
		{"exact host, other path", "static.example.com", "/index.html", 1},
		{"host with port", "static.example.com:443", "/", 1},
		{"host upper case", "STATIC.Example.COM", "/x.CSS", 1},
		{"host upper case with path", "STATIC.Example.COM", "/x.css", 0},
		{"trailing dot", "static.example.com.", "/", 1},
		{"wildcard with path", "api.example.com", "/api/v1", 2},
		{"wildcard without path", "api.example.com", "/v1", 3},
		{"wildcard deep", "a.b.example.com", "/", 3},
		{"wildcard does not match apex", "example.com", "/", 7},
		{"wildcard does not match suffix without dot", "badexample.com", "/", 7},
		{"wildcard does not match bare dot", ".example.com", "/", 7},
		{"unicode rule, punycode request", "xn--bcher-kva.example.org", "/", 4},
		{"unicode rule, unicode request", "BÜCHER.example.org", "/", 4},
		{"punycode wildcard, unicode request", "menu.café.example.org", "/", 5},
		{"punycode wildcard, punycode request", "menu.xn--caf-dma.example.org:8443", "/", 5},
		{"path-only rule", "anything.test", "/healthz", 6},
		{"path-only rule is a regexp", "anything.test", "/healthz/x", 7},
		{"catch-all", "other.test", "/", 7},
		{"empty host", "", "", 7},
		{"ipv6 host", "[::1]:8080", "/", 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, r := in.Match(tt.host, tt.path)
			if got != tt.want {
				t.Errorf("Match(%q, %q) = %d, want %d", tt.host, tt.path, got, tt.want)
			}
			if r == nil || r.Index != got {
				t.Errorf("rule %+v does not have index %d", r, got)
			}
		})
	}
	var zero Ingress
	if i, r := zero.Match("a", "/"); i != -1 || r != nil {
		t.Errorf("zero Ingress Match = %d, %v; want -1, nil", i, r)
	}
}

func TestStripPort(t *testing.T) {
	tests := []struct{ in, want string }{
		{"example.com", "example.com"},
		{"example.com:443", "example.com"},
		{"example.com.:443", "example.com"},
		{"[::1]:80", "::1"},
		{"[::1]", "::1"},
		{"::1", "::1"},
		{"", ""},
		{":80", ""},
		{"[", "["},
	}
	for _, tt := range tests {
		if got := stripPort(tt.in); got != tt.want {
			t.Errorf("stripPort(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHostnames(t *testing.T) {
	tests := []struct {
		hostname string
		err      string
	}{
		{"example.com", ""},
		{"*.example.com", ""},
		{"*", ""},
		{"", ""},
		{"a_b.example.com", ""},
		{"192.0.2.1", ""},
		{"bücher.example.com", ""},
		{"*example.com", "a wildcard must be the whole first label"},
		{"a.*.example.com", "a wildcard must be the whole first label"},
		{"*.*.example.com", "a wildcard must be the whole first label"},
		{"example.com:80", "must not contain a port"},
		{"[::1]", "is not a hostname"},
		{"a..example.com", "has an empty label"},
		{".example.com", "has an empty label"},
		{"-a.example.com", "must not start or end with '-'"},
		{strings.Repeat("a", 64) + ".com", "longer than 63"},
		{strings.Repeat("a.", 127) + "com", "longer than 253"},
		{"a/b.example.com", "which hostnames may not contain"},
	}
	for _, tt := range tests {
		t.Run(tt.hostname, func(t *testing.T) {
			var r Rule
			err := r.setHostname(tt.hostname)
			if tt.err == "" && err != nil {
				t.Errorf("got %v, want no error", err)
			}
			if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("got %v, want an error containing %q", err, tt.err)
			}
		})
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	in := mustNew(t, matchConfig)
	allocs := testing.AllocsPerRun(100, func() {
		in.Match("Deep.API.example.com:443", "/api/v1/users")
		in.Match("other.test", "/healthz")
		in.Match("menu.café.example.org", "/")
	})
	if allocs != 0 {
		t.Errorf("Match allocates %v times per run, want 0", allocs)
	}
}

func BenchmarkMatch(b *testing.B) {
	in := mustNew(b, matchConfig)
	for _, bc := range []struct{ name, host, path string }{
		{"first", "static.example.com", "/a.jpg"},
		{"wildcard", "api.example.com:443", "/api/v1"},
		{"catch-all", "other.test", "/"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				in.Match(bc.host, bc.path)
			}
		})
	}
}

// TestApplySetsEveryField checks Apply's field table: each option set in an
// OriginRequestConfig reaches the OriginRequest field of the same name.
func TestApplySetsEveryField(t *testing.T) {
	var c OriginRequestConfig
	cv := reflect.ValueOf(&c).Elem()
	for i := range cv.NumField() {
		f := cv.Field(i)
		switch f.Kind() {
		case reflect.Pointer:
			p := reflect.New(f.Type().Elem())
			switch e := p.Elem(); e.Kind() {
			case reflect.Bool:
				e.SetBool(true)
			case reflect.Int, reflect.Int64:
				e.SetInt(7)
			case reflect.String:
				e.SetString("x")
			case reflect.Struct:
				e.Set(reflect.ValueOf(Access{TeamName: "t", AUDTag: []string{"a"}}))
			}
			f.Set(p)
		case reflect.Slice:
			f.Set(reflect.ValueOf([]IPRule{{Prefix: "10.0.0.0/8", Ports: []int{22}}}))
		}
	}
	o := c.Apply(OriginRequest{})
	ov := reflect.ValueOf(o)
	for i := range cv.NumField() {
		name := cv.Type().Field(i).Name
		if ov.FieldByName(name).IsZero() {
			t.Errorf("Apply left %s unset", name)
		}
	}
	c.IPRules[0].Ports[0] = 23
	c.Access.AUDTag[0] = "b"
	if o.IPRules[0].Ports[0] != 22 || o.Access.AUDTag[0] != "a" {
		t.Errorf("Apply's result shares lists with its input: %+v", o)
	}
}

// TestCloudflaredOnlyKeys: a key cloudflared reads and adit does not is
// refused by name with the reason, never as an unknown key, and none of
// them is one Config holds.
func TestCloudflaredOnlyKeys(t *testing.T) {
	for key, why := range cloudflaredOnly {
		if fieldIndex(reflect.TypeFor[Config](), key) >= 0 {
			t.Errorf("%s is a Config key and cannot be refused", key)
		}
		_, err := Parse([]byte("tunnel: web\n" + key + ": x\n"))
		if want := "ingress: " + key + ": " + why + " (line 2)"; err == nil || err.Error() != want {
			t.Errorf("got %v\nwant %s", err, want)
		}
	}
}
