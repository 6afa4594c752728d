package service

import (
	"fmt"
	"strings"
)

// hardening is the unit's sandbox: what a connector does without. It
// dials out (IPv4, IPv6; unix sockets for unix: origins; netlink for the
// interface list), reads its config and credentials, and may append to a
// logfile or write a pidfile under /var (hence ProtectSystem=full, not
// strict, which would make /var read-only too). The home directories stay
// readable (a config's caPool or a unix: origin's socket may live there;
// connecting to a socket works on a read-only mount). It needs no
// capability: it binds no port below 1024 (a metrics port that does gets
// EACCES and says so).
var hardening = []string{
	"NoNewPrivileges=yes",
	"CapabilityBoundingSet=",
	"AmbientCapabilities=",
	"ProtectSystem=full",
	"ProtectHome=read-only",
	"PrivateTmp=yes",
	"PrivateDevices=yes",
	"ProtectKernelTunables=yes",
	"ProtectKernelModules=yes",
	"ProtectKernelLogs=yes",
	"ProtectControlGroups=yes",
	"ProtectClock=yes",
	"ProtectHostname=yes",
	"RestrictNamespaces=yes",
	"RestrictRealtime=yes",
	"RestrictSUIDSGID=yes",
	"LockPersonality=yes",
	"MemoryDenyWriteExecute=yes",
	"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
	"SystemCallArchitectures=native",
	"UMask=0077",
}

// SystemdUnit returns the unit that runs `adit tunnel run` for cfg, reading
// the token from tokenFile or the credentials from credsFile (through
// LoadCredential=) and the ingress rules from configFile; empty names are
// not used. systemctl start waits until the connector has registered with
// the edge (Type=notify). It restarts the connector 5s after any failure, forever (a
// refused tunnel keeps failing, and says why in the journal), and stops
// it with SIGTERM, which drains requests in flight for the grace period.
func SystemdUnit(cfg Config, tokenFile, configFile, credsFile string) ([]byte, error) {
	args := []string{cfg.Binary, "tunnel", "run"}
	var creds []string
	if tokenFile != "" {
		args = append(args, "--token-file", "%d/"+TokenName)
		creds = append(creds, "LoadCredential="+TokenName+":"+escapeSpecifiers(tokenFile))
	} else if credsFile != "" {
		args = append(args, "--credentials-file", "%d/"+CredentialsName)
		creds = append(creds, "LoadCredential="+CredentialsName+":"+escapeSpecifiers(credsFile))
	}
	if configFile != "" {
		args = append(args, "--config", configFile)
	}
	exec := make([]string, len(args))
	for i, a := range args {
		if strings.HasPrefix(a, "%d/") { // the one specifier meant
			exec[i] = a
			continue
		}
		exec[i] = quoteExecArg(a)
	}
	what := "a remotely-managed tunnel"
	if configFile != "" {
		what = "the rules of " + configFile
	}
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("# Written by `adit service install`; `adit service uninstall` removes it.")
	w("[Unit]")
	w("Description=adit connector (%s)", escapeSpecifiers(what))
	w("Documentation=https://github.com/adit-dev/adit#run-the-connector-as-a-service")
	w("After=network-online.target")
	w("Wants=network-online.target")
	w("")
	w("[Service]")
	// The connector says READY=1 once its first connection is registered
	// (tunnel run, with $NOTIFY_SOCKET): systemctl start returns when the
	// tunnel is up, and fails after TimeoutStartSec (90s) when it is not.
	w("Type=notify")
	w("NotifyAccess=main")
	w("ExecStart=%s", strings.Join(exec, " "))
	if configFile != "" {
		w("ExecReload=/bin/kill -HUP $MAINPID")
	}
	for _, c := range creds {
		w("%s", c)
	}
	if cfg.User != "" {
		w("User=%s", cfg.User)
	}
	w("Restart=on-failure")
	w("RestartSec=5s")
	for _, h := range hardening {
		w("%s", h)
	}
	w("")
	w("[Install]")
	w("WantedBy=multi-user.target")
	return []byte(b.String()), nil
}

// escapeSpecifiers doubles the % that systemd would read as a specifier.
func escapeSpecifiers(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// quoteExecArg writes one ExecStart= argument: specifiers and variable
// expansion escaped, and quoted when it holds white space, a quote or a
// backslash (systemd.service(5), "Command lines").
func quoteExecArg(s string) string {
	s = escapeSpecifiers(s)
	s = strings.ReplaceAll(s, "$", "$$")
	if s != "" && !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}
