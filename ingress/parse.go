package ingress

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Parse decodes a cloudflared config.yml. Every key must be one cloudflared knows
// (see [Config]); an unknown key, a value of the wrong type or a bad value is an
// error naming where it is, like
//
//	ingress: rule 3: unknown key "servce" (line 12)
//	ingress: originRequest: connectTimeout: "30x" is not a duration, like 30s or 1m30s (line 4)
//
// YAML anchors, aliases and merge keys ("<<") are followed. An empty document is an
// empty Config. Parse checks types and option values; [New] checks the rules
// themselves (services, hostnames, paths, order).
func Parse(data []byte) (*Config, error) { return parse(data, "") }

// maxMergeDepth bounds nested "<<" merges, which aliases can make cyclic.
const maxMergeDepth = 8

// maxNodes bounds the nodes a config may expand to through aliases and merges, so
// a small file cannot make Parse do unbounded work.
const maxNodes = 100_000

type decoder struct {
	file  string // named in errors when set
	nodes int    // nodes visited, up to maxNodes
}

// visit counts n nodes against maxNodes.
func (d *decoder) visit(where string, at *yaml.Node, n int) error {
	d.nodes += n
	if d.nodes > maxNodes {
		return d.errf(where, at, "config expands to too many nodes through aliases")
	}
	return nil
}

// errf formats an error as "ingress: [file: ][where: ]msg[ (line N)]".
func (d *decoder) errf(where string, n *yaml.Node, format string, args ...any) error {
	var b strings.Builder
	b.WriteString("ingress: ")
	if d.file != "" {
		b.WriteString(d.file)
		b.WriteString(": ")
	}
	if where != "" {
		b.WriteString(where)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, format, args...)
	if n != nil && n.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", n.Line)
	}
	return errors.New(b.String())
}

func join(where, key string) string {
	if where == "" {
		return key
	}
	return where + ": " + key
}

func parse(data []byte, file string) (*Config, error) {
	d := &decoder{file: file}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, d.errf("", nil, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	cfg := &Config{}
	n := &root
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return cfg, nil
		}
		n = n.Content[0]
	}
	if n.Kind == 0 {
		return cfg, nil
	}
	if err := d.config(cfg, n); err != nil {
		return nil, err
	}
	return cfg, nil
}

// field is one key: value pair of a mapping.
type field struct {
	key   string
	knode *yaml.Node
	val   *yaml.Node // aliases resolved
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// describe names what a node holds, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch {
	case isNull(n):
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "something else"
}

// fields returns the pairs of mapping n (nil for null), with merge keys expanded:
// keys written in n win over merged ones, and earlier merges over later ones.
func (d *decoder) fields(where string, n *yaml.Node, depth int) ([]field, error) {
	n = resolve(n)
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, d.errf(where, n, "want a mapping of keys, got %s", describe(n))
	}
	if depth > maxMergeDepth {
		return nil, d.errf(where, n, "merge keys (<<) nested too deep")
	}
	if err := d.visit(where, n, len(n.Content)); err != nil {
		return nil, err
	}
	var out, merged []field
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k == nil || k.Kind != yaml.ScalarNode {
			return nil, d.errf(where, n.Content[i], "keys must be plain words, got %s", describe(k))
		}
		if k.Tag == "!!merge" {
			var srcs []*yaml.Node
			if v != nil && v.Kind == yaml.SequenceNode {
				srcs = v.Content
			} else {
				srcs = []*yaml.Node{v}
			}
			for _, src := range srcs {
				fs, err := d.fields(where, src, depth+1)
				if err != nil {
					return nil, err
				}
				merged = append(merged, fs...)
			}
			continue
		}
		if seen[k.Value] {
			return nil, d.errf(where, k, "key %q appears twice", k.Value)
		}
		seen[k.Value] = true
		out = append(out, field{key: k.Value, knode: k, val: v})
	}
	for _, f := range merged {
		if !seen[f.key] {
			seen[f.key] = true
			out = append(out, f)
		}
	}
	return out, nil
}

func (d *decoder) unknown(where string, f field) error {
	if where == "" {
		return d.errf("", f.knode, "unknown top-level key %q", f.key)
	}
	return d.errf(where, f.knode, "unknown key %q", f.key)
}

// Scalar decoders. Callers skip null values (a key with no value counts as unset),
// so these see non-null nodes only.

func (d *decoder) str(where string, n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", d.errf(where, n, "want text, got %s", describe(n))
	}
	return n.Value, nil
}

func (d *decoder) boolean(where string, n *yaml.Node) (bool, error) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		return false, d.errf(where, n, "want true or false, got %s", describe(n))
	}
	return b, nil
}

func (d *decoder) integer(where string, n *yaml.Node) (int, error) {
	var i int
	if n.Kind != yaml.ScalarNode || n.Decode(&i) != nil {
		return 0, d.errf(where, n, "want a whole number, got %s", describe(n))
	}
	return i, nil
}

func (d *decoder) duration(where string, n *yaml.Node) (Duration, error) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		var secs int64
		if err := n.Decode(&secs); err != nil || secs > math.MaxInt64/int64(time.Second) || secs < math.MinInt64/int64(time.Second) {
			return 0, d.errf(where, n, "%s is not a duration, like 30s or 1m30s", describe(n))
		}
		return Duration(time.Duration(secs) * time.Second), nil
	}
	if n.Kind != yaml.ScalarNode {
		return 0, d.errf(where, n, "want a duration like 30s or 1m30s, got %s", describe(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return 0, d.errf(where, n, "%s is not a duration, like 30s or 1m30s", describe(n))
	}
	return Duration(v), nil
}

// list returns the items of a list; a single scalar counts as a list of one.
func list(n *yaml.Node) []*yaml.Node {
	if n.Kind == yaml.SequenceNode {
		return n.Content
	}
	return []*yaml.Node{n}
}

func (d *decoder) strList(where string, n *yaml.Node) ([]string, error) {
	return decodeList(d, where, n, d.str)
}

func (d *decoder) intList(where string, n *yaml.Node) ([]int, error) {
	return decodeList(d, where, n, d.integer)
}

// decodeList decodes a list (or a single scalar) with elem per item.
func decodeList[T any](d *decoder, where string, n *yaml.Node, elem func(string, *yaml.Node) (T, error)) ([]T, error) {
	if err := d.visit(where, n, len(n.Content)); err != nil {
		return nil, err
	}
	var out []T
	for _, item := range list(n) {
		item = resolve(item)
		if isNull(item) {
			return nil, d.errf(where, n, "list has an empty item")
		}
		v, err := elem(where, item)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// oneOf checks s against the allowed values.
func (d *decoder) oneOf(where string, n *yaml.Node, s string, allowed ...string) error {
	for _, a := range allowed {
		if s == a {
			return nil
		}
	}
	return d.errf(where, n, "%q is not one of %s", s, strings.Join(allowed, ", "))
}

func (d *decoder) config(cfg *Config, n *yaml.Node) error {
	fs, err := d.fields("", n, 0)
	if err != nil {
		return err
	}
	for _, f := range fs {
		if isNull(f.val) {
			continue
		}
		w, v := f.key, f.val
		switch f.key {
		case "tunnel":
			cfg.Tunnel, err = d.str(w, v)
		case "credentials-file":
			cfg.CredentialsFile, err = d.str(w, v)
		case "origincert":
			cfg.OriginCert, err = d.str(w, v)
		case "originRequest":
			err = d.originRequest(&cfg.OriginRequest, "originRequest", v)
		case "ingress":
			err = d.ingress(cfg, v)
		case "url":
			cfg.URL, err = d.str(w, v)
		case "hello-world":
			cfg.HelloWorld, err = d.boolean(w, v)
		case "warp-routing":
			err = d.warpRouting(&cfg.WarpRouting, v)
		case "protocol":
			if cfg.Protocol, err = d.str(w, v); err == nil {
				err = d.oneOf(w, v, cfg.Protocol, "auto", "quic", "websocket", "http2")
			}
		case "edge-ip-version":
			if cfg.EdgeIPVersion, err = d.str(w, v); err == nil {
				err = d.oneOf(w, v, cfg.EdgeIPVersion, "auto", "4", "6")
			}
		case "edge-bind-address":
			if cfg.EdgeBindAddress, err = d.str(w, v); err == nil {
				if _, perr := netip.ParseAddr(cfg.EdgeBindAddress); perr != nil {
					err = d.errf(w, v, "%q is not an IP address", cfg.EdgeBindAddress)
				}
			}
		case "region":
			cfg.Region, err = d.str(w, v)
		case "ha-connections":
			if cfg.HAConnections, err = d.integer(w, v); err == nil && cfg.HAConnections < 0 {
				err = d.errf(w, v, "must not be negative")
			}
		case "retries":
			var r int
			if r, err = d.integer(w, v); err == nil && r < 0 {
				err = d.errf(w, v, "must not be negative")
			}
			cfg.Retries = &r
		case "grace-period":
			if cfg.GracePeriod, err = d.duration(w, v); err == nil && cfg.GracePeriod < 0 {
				err = d.errf(w, v, "must not be negative")
			}
		case "post-quantum":
			cfg.PostQuantum, err = d.boolean(w, v)
		case "tag":
			if cfg.Tag, err = d.strList(w, v); err == nil {
				for _, t := range cfg.Tag {
					if k, _, ok := strings.Cut(t, "="); !ok || k == "" {
						err = d.errf(w, v, "%q is not KEY=VALUE", t)
						break
					}
				}
			}
		case "loglevel":
			if cfg.LogLevel, err = d.str(w, v); err == nil {
				err = d.oneOf(w, v, cfg.LogLevel, logLevels...)
			}
		case "transport-loglevel":
			if cfg.TransportLogLevel, err = d.str(w, v); err == nil {
				err = d.oneOf(w, v, cfg.TransportLogLevel, logLevels...)
			}
		case "logfile":
			cfg.LogFile, err = d.str(w, v)
		case "log-directory":
			cfg.LogDirectory, err = d.str(w, v)
		case "metrics":
			if cfg.Metrics, err = d.str(w, v); err == nil {
				if _, _, serr := net.SplitHostPort(cfg.Metrics); serr != nil {
					err = d.errf(w, v, "%q is not host:port", cfg.Metrics)
				}
			}
		case "pidfile":
			cfg.PIDFile, err = d.str(w, v)
		case "no-autoupdate":
			cfg.NoAutoupdate, err = d.boolean(w, v)
		case "autoupdate-freq":
			if cfg.AutoupdateFreq, err = d.duration(w, v); err == nil && cfg.AutoupdateFreq < 0 {
				err = d.errf(w, v, "must not be negative")
			}
		default:
			err = d.unknown("", f)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

var logLevels = []string{"debug", "info", "warn", "error", "fatal"}

func (d *decoder) warpRouting(wr *WarpRouting, n *yaml.Node) error {
	const where = "warp-routing"
	fs, err := d.fields(where, n, 0)
	if err != nil {
		return err
	}
	for _, f := range fs {
		if isNull(f.val) {
			continue
		}
		w, v := join(where, f.key), f.val
		switch f.key {
		case "enabled":
			wr.Enabled, err = d.boolean(w, v)
		case "connectTimeout":
			if wr.ConnectTimeout, err = d.duration(w, v); err == nil && wr.ConnectTimeout < 0 {
				err = d.errf(w, v, "must not be negative")
			}
		case "tcpKeepAlive":
			if wr.TCPKeepAlive, err = d.duration(w, v); err == nil && wr.TCPKeepAlive < 0 {
				err = d.errf(w, v, "must not be negative")
			}
		case "maxActiveFlows":
			if wr.MaxActiveFlows, err = d.integer(w, v); err == nil && wr.MaxActiveFlows < 0 {
				err = d.errf(w, v, "must not be negative")
			}
		default:
			err = d.unknown(where, f)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) ingress(cfg *Config, n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return d.errf("ingress", n, "want a list of rules, got %s", describe(n))
	}
	for i, item := range n.Content {
		where := fmt.Sprintf("rule %d", i+1)
		item = resolve(item)
		if isNull(item) {
			return d.errf(where, n.Content[i], "rule is empty; want hostname, path, service")
		}
		if item.Kind != yaml.MappingNode {
			return d.errf(where, item, "want a mapping of hostname, path, service, originRequest, got %s", describe(item))
		}
		var rc RuleConfig
		if err := d.rule(&rc, where, item); err != nil {
			return err
		}
		cfg.Ingress = append(cfg.Ingress, rc)
	}
	return nil
}

func (d *decoder) rule(rc *RuleConfig, where string, n *yaml.Node) error {
	fs, err := d.fields(where, n, 0)
	if err != nil {
		return err
	}
	for _, f := range fs {
		if isNull(f.val) {
			continue
		}
		w, v := join(where, f.key), f.val
		switch f.key {
		case "hostname":
			rc.Hostname, err = d.str(w, v)
		case "path":
			rc.Path, err = d.str(w, v)
		case "service":
			rc.Service, err = d.str(w, v)
		case "originRequest":
			err = d.originRequest(&rc.OriginRequest, w, v)
		default:
			err = d.unknown(where, f)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) originRequest(o *OriginRequestConfig, where string, n *yaml.Node) error {
	fs, err := d.fields(where, n, 0)
	if err != nil {
		return err
	}
	dur := func(dst **Duration, w string, v *yaml.Node) error {
		x, err := d.duration(w, v)
		if err != nil {
			return err
		}
		if why := checkDuration(x); why != "" {
			return d.errf(w, v, "%s", why)
		}
		*dst = &x
		return nil
	}
	flag := func(dst **bool, w string, v *yaml.Node) error {
		b, err := d.boolean(w, v)
		*dst = &b
		return err
	}
	text := func(dst **string, w string, v *yaml.Node, check func(string) string) error {
		s, err := d.str(w, v)
		if err != nil {
			return err
		}
		if check != nil {
			if why := check(s); why != "" {
				return d.errf(w, v, "%s", why)
			}
		}
		*dst = &s
		return nil
	}
	num := func(dst **int, w string, v *yaml.Node, check func(int) string) error {
		i, err := d.integer(w, v)
		if err != nil {
			return err
		}
		if why := check(i); why != "" {
			return d.errf(w, v, "%s", why)
		}
		*dst = &i
		return nil
	}
	for _, f := range fs {
		if isNull(f.val) {
			continue
		}
		w, v := join(where, f.key), f.val
		switch f.key {
		case "connectTimeout":
			err = dur(&o.ConnectTimeout, w, v)
		case "tlsTimeout":
			err = dur(&o.TLSTimeout, w, v)
		case "tcpKeepAlive":
			err = dur(&o.TCPKeepAlive, w, v)
		case "keepAliveTimeout":
			err = dur(&o.KeepAliveTimeout, w, v)
		case "noHappyEyeballs":
			err = flag(&o.NoHappyEyeballs, w, v)
		case "matchSNItoHost":
			err = flag(&o.MatchSNIToHost, w, v)
		case "noTLSVerify":
			err = flag(&o.NoTLSVerify, w, v)
		case "disableChunkedEncoding":
			err = flag(&o.DisableChunkedEncoding, w, v)
		case "http2Origin":
			err = flag(&o.HTTP2Origin, w, v)
		case "bastionMode":
			err = flag(&o.BastionMode, w, v)
		case "keepAliveConnections":
			err = num(&o.KeepAliveConnections, w, v, checkCount)
		case "proxyPort":
			err = num(&o.ProxyPort, w, v, checkPort)
		case "httpHostHeader":
			err = text(&o.HTTPHostHeader, w, v, checkHostHeader)
		case "originServerName":
			err = text(&o.OriginServerName, w, v, nil)
		case "caPool":
			err = text(&o.CAPool, w, v, nil)
		case "proxyAddress":
			err = text(&o.ProxyAddress, w, v, nil)
		case "proxyType":
			err = text(&o.ProxyType, w, v, checkProxyType)
		case "ipRules":
			o.IPRules, err = d.ipRules(w, v)
		case "access":
			o.Access, err = d.access(w, v)
		default:
			err = d.unknown(where, f)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) ipRules(where string, n *yaml.Node) ([]IPRule, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, d.errf(where, n, "want a list of {prefix, ports, allow}, got %s", describe(n))
	}
	var out []IPRule
	for i, item := range n.Content {
		w := fmt.Sprintf("%s[%d]", where, i+1)
		item = resolve(item)
		if isNull(item) {
			return nil, d.errf(w, n.Content[i], "empty; want prefix, ports, allow")
		}
		fs, err := d.fields(w, item, 0)
		if err != nil {
			return nil, err
		}
		var r IPRule
		for _, f := range fs {
			if isNull(f.val) {
				continue
			}
			fw, v := join(w, f.key), f.val
			switch f.key {
			case "prefix":
				r.Prefix, err = d.str(fw, v)
			case "ports":
				r.Ports, err = d.intList(fw, v)
			case "allow":
				r.Allow, err = d.boolean(fw, v)
			default:
				err = d.unknown(w, f)
			}
			if err != nil {
				return nil, err
			}
		}
		if field, why := checkIPRule(r); why != "" {
			return nil, d.errf(join(w, field), item, "%s", why)
		}
		out = append(out, r)
	}
	return out, nil
}

func (d *decoder) access(where string, n *yaml.Node) (*Access, error) {
	fs, err := d.fields(where, n, 0)
	if err != nil {
		return nil, err
	}
	a := &Access{}
	for _, f := range fs {
		if isNull(f.val) {
			continue
		}
		w, v := join(where, f.key), f.val
		switch f.key {
		case "required":
			a.Required, err = d.boolean(w, v)
		case "teamName":
			a.TeamName, err = d.str(w, v)
		case "audTag":
			a.AUDTag, err = d.strList(w, v)
		default:
			err = d.unknown(where, f)
		}
		if err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Value checks shared by Parse (which adds the line) and New (which sees configs
// built in code). Each returns "" when the value is fine, else why it is not.

func checkDuration(d Duration) string {
	if d < 0 {
		return "must not be negative"
	}
	return ""
}

func checkCount(n int) string {
	if n < 0 {
		return "must not be negative"
	}
	return ""
}

func checkPort(p int) string {
	if p < 0 || p > 65535 {
		return fmt.Sprintf("%d is not a port (0 to 65535)", p)
	}
	return ""
}

func checkProxyType(s string) string {
	if s != "" && s != "socks" {
		return fmt.Sprintf("%q is not a proxy type; want \"socks\" or nothing", s)
	}
	return ""
}

func checkHostHeader(s string) string {
	if strings.ContainsAny(s, " \t\r\n/") {
		return fmt.Sprintf("%q is not a host", s)
	}
	return ""
}

// checkIPRule returns the bad field of r and why, or "", "".
func checkIPRule(r IPRule) (field, why string) {
	if r.Prefix == "" {
		return "prefix", "required, like 10.0.0.0/8"
	}
	if _, err := netip.ParsePrefix(r.Prefix); err != nil {
		return "prefix", fmt.Sprintf("%q is not a CIDR prefix like 10.0.0.0/8", r.Prefix)
	}
	for _, p := range r.Ports {
		if p < 1 || p > 65535 {
			return "ports", fmt.Sprintf("%d is not a port (1 to 65535)", p)
		}
	}
	return "", ""
}

// validate checks the values of an originRequest built in code, naming the first bad
// field.
func (o *OriginRequestConfig) validate() (field, why string) {
	for _, c := range []struct {
		name string
		d    *Duration
	}{{"connectTimeout", o.ConnectTimeout}, {"tlsTimeout", o.TLSTimeout}, {"tcpKeepAlive", o.TCPKeepAlive}, {"keepAliveTimeout", o.KeepAliveTimeout}} {
		if c.d != nil {
			if why := checkDuration(*c.d); why != "" {
				return c.name, why
			}
		}
	}
	if o.KeepAliveConnections != nil {
		if why := checkCount(*o.KeepAliveConnections); why != "" {
			return "keepAliveConnections", why
		}
	}
	if o.ProxyPort != nil {
		if why := checkPort(*o.ProxyPort); why != "" {
			return "proxyPort", why
		}
	}
	if o.ProxyType != nil {
		if why := checkProxyType(*o.ProxyType); why != "" {
			return "proxyType", why
		}
	}
	if o.HTTPHostHeader != nil {
		if why := checkHostHeader(*o.HTTPHostHeader); why != "" {
			return "httpHostHeader", why
		}
	}
	for i, r := range o.IPRules {
		if f, why := checkIPRule(r); why != "" {
			return fmt.Sprintf("ipRules[%d]: %s", i+1, f), why
		}
	}
	return "", ""
}
