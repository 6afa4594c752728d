package ingress

// cloudflaredOnly are top-level keys cloudflared reads from config.yml (its
// command-line flags, which it also takes from the file) that adit does not,
// with the reason and what to do instead. Parse refuses each by name with
// its reason, rather than as an unknown key: the file is a working
// cloudflared config, and the person moving it over needs to know what
// changes. Keys Config holds are not listed here; `tunnel run` decides
// about those (cli/runconfig.go).
var cloudflaredOnly = func() map[string]string {
	m := map[string]string{
		// Classic (pre-named) tunnels.
		"hostname": "cloudflared's classic-tunnel setting; route a hostname with `adit tunnel route dns` and give it an ingress rule",
		"lb-pool":  "cloudflared's classic-tunnel setting; run several connectors of one tunnel instead (replicas)",
		"name":     "cloudflared's quick-tunnel setting; create the tunnel with `adit tunnel create`",
		"id":       "not read from the config; name the tunnel with the tunnel key",

		// Secrets and credentials.
		"token":                "a tunnel token does not belong in a config file; use --token-file or ADIT_TUNNEL_TOKEN",
		"credentials-contents": "credentials do not belong in a config file; name the file with credentials-file",

		// Features adit does not have.
		"management-diagnostics": "not implemented: adit has no remote management diagnostics",
		"icmpv4-src":             "not implemented: adit does not carry ICMP (no WARP private routing)",
		"icmpv6-src":             "not implemented: adit does not carry ICMP (no WARP private routing)",
		"label":                  "not implemented: connectors report no labels to the edge",
		"compression-quality":    "not implemented: adit does not compress the tunnel",
		"max-fetch-size":         "not implemented: adit has no tunnel listing cache",
		"api-url":                "not read from the config: `adit login --api` names the edge's API",
		"edge":                   "not read from the config: pass --edge HOST:PORT (the credentials name the edges otherwise)",
		"cacert":                 "not read from the config: the credentials carry the edge's CA",
		"rpc-timeout":            "not implemented: adit's control messages have their own fixed timeouts",
		"write-stream-timeout":   "not implemented: streams end with their requests or the grace period",
		"max-edge-addr-retries":  "not implemented: adit retries each edge address until stopped",
		"dial-edge-timeout":      "not implemented: adit's edge dial has its own timeout (2s QUIC handshake idle time)",
		"quick-service":          "not implemented: adit has no quick tunnels",
		"dns-resolver-addrs":     "not implemented: adit resolves with the system's resolver",
		"features":               "not implemented: adit's connector announces its own features",
		"trace-output":           "not implemented: profile with --metrics and /debug/pprof/ instead",
		"use-reconnect-token":    "not implemented: adit re-registers each connection with the tunnel secret",
		"stdin-control":          "not implemented",
		"is-autoupdated":         "not implemented: adit never updates itself",
		"service-op-ip":          "not implemented: adit has no service operations endpoint",
		"unix-socket":            "cloudflared's legacy single-origin flag; write an ingress rule with service: unix:/path",
		"socks5":                 "cloudflared's legacy single-origin flag; write an ingress rule with service: socks-proxy",
		"bastion":                "cloudflared's legacy single-origin flag; write an ingress rule with service: bastion",
		"no-chunked-encoding":    "cloudflared's legacy top-level origin flag; write it under originRequest as disableChunkedEncoding",
	}
	for _, k := range []string{"proxy-dns", "proxy-dns-port", "proxy-dns-address", "proxy-dns-upstream", "proxy-dns-max-upstream-conns", "proxy-dns-bootstrap"} {
		m[k] = "not implemented: adit has no DNS over HTTPS proxy"
	}
	// Legacy top-level origin flags: cloudflared's defaults for every
	// rule, which config.yml writes under originRequest.
	for flag, key := range map[string]string{
		"no-tls-verify":               "noTLSVerify",
		"origin-server-name":          "originServerName",
		"origin-ca-pool":              "caPool",
		"http-host-header":            "httpHostHeader",
		"http2-origin":                "http2Origin",
		"proxy-connect-timeout":       "connectTimeout",
		"proxy-tls-timeout":           "tlsTimeout",
		"proxy-tcp-keepalive":         "tcpKeepAlive",
		"proxy-no-happy-eyeballs":     "noHappyEyeballs",
		"proxy-keepalive-connections": "keepAliveConnections",
		"proxy-keepalive-timeout":     "keepAliveTimeout",
	} {
		m[flag] = "cloudflared's legacy top-level origin flag; write it under originRequest as " + key
	}
	return m
}()
