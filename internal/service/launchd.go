package service

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
)

// LaunchdPlist returns the launchd job that runs `adit tunnel run` for cfg,
// reading the token from tokenFile (or the credentials from credsFile) and
// the ingress rules from configFile; empty names are not used. launchd
// restarts it when it exits with a failure (KeepAlive SuccessfulExit
// false), at most every 5s, and starts it at load (boot, for a daemon in
// /Library/LaunchDaemons). Its output goes to adit.log beside the system's
// (or, for an agent, the user's) other logs, as cloudflared's does.
func LaunchdPlist(cfg Config, tokenFile, configFile, credsFile string) ([]byte, error) {
	args := []string{cfg.Binary, "tunnel", "run"}
	if tokenFile != "" {
		args = append(args, "--token-file", tokenFile)
	} else if credsFile != "" {
		args = append(args, "--credentials-file", credsFile)
	}
	if configFile != "" {
		args = append(args, "--config", configFile)
	}
	logDir := "/Library/Logs"
	if cfg.UnitDir != "/Library/LaunchDaemons" && os.Geteuid() != 0 {
		if home, err := os.UserHomeDir(); err == nil {
			logDir = filepath.Join(home, "Library", "Logs")
		}
	}
	logFile := filepath.Join(logDir, "adit.log")

	var b bytes.Buffer
	b.WriteString(xml.Header)
	b.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n")
	b.WriteString("<plist version=\"1.0\">\n<dict>\n")
	key := func(k string) { fmt.Fprintf(&b, "\t<key>%s</key>\n", k) }
	str := func(indent, s string) {
		b.WriteString(indent + "<string>")
		xml.EscapeText(&b, []byte(s))
		b.WriteString("</string>\n")
	}
	key("Label")
	str("\t", LaunchdLabel)
	key("ProgramArguments")
	b.WriteString("\t<array>\n")
	for _, a := range args {
		str("\t\t", a)
	}
	b.WriteString("\t</array>\n")
	if cfg.User != "" {
		key("UserName")
		str("\t", cfg.User)
	}
	key("RunAtLoad")
	b.WriteString("\t<true/>\n")
	key("KeepAlive")
	b.WriteString("\t<dict>\n\t\t<key>SuccessfulExit</key>\n\t\t<false/>\n\t</dict>\n")
	key("ThrottleInterval")
	b.WriteString("\t<integer>5</integer>\n")
	key("Umask")
	b.WriteString("\t<integer>63</integer>\n") // 077
	key("StandardOutPath")
	str("\t", logFile)
	key("StandardErrorPath")
	str("\t", logFile)
	b.WriteString("</dict>\n</plist>\n")
	return b.Bytes(), nil
}
