package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/adit-dev/adit/control"
)

func TestRouteTCP(t *testing.T) {
	e := newTestEdge(t)
	e.ok("login", "--api", e.api, "--token-file", e.tokenFile, "--ca", e.caFile)
	webID := e.create("web")
	e.create("db")

	out := e.ok("tunnel", "route", "tcp", "web", "2222", "SSH.example.com")
	if want := "Added tcp route: port 2222 → tunnel " + webID + " (ssh.example.com)"; !strings.Contains(out, want) {
		t.Errorf("route tcp printed %q, want %q", out, want)
	}
	out = e.ok("tunnel", "route", "tcp", "web", "5432")
	if !strings.Contains(out, "catch-all") {
		t.Errorf("route tcp without hostname printed %q, want it to name the catch-all rule", out)
	}

	e.fails("already routed elsewhere; use --overwrite", "tunnel", "route", "tcp", "db", "2222")
	e.ok("tunnel", "route", "tcp", "--overwrite", "db", "2222")

	out = e.ok("tunnel", "route", "tcp", "--list", "-o", "json")
	var routes []control.TCPRoute
	if err := json.Unmarshal([]byte(out), &routes); err != nil {
		t.Fatalf("--list -o json: %v\n%s", err, out)
	}
	if len(routes) != 2 || routes[0].Port != 2222 || routes[0].TunnelID == webID || routes[1].Port != 5432 {
		t.Errorf("routes = %+v, want 2222 (moved to db) and 5432", routes)
	}
	out = e.ok("tunnel", "route", "tcp", "--list")
	if !strings.Contains(out, "PORT") || !strings.Contains(out, "5432") || !strings.Contains(out, "(catch-all)") {
		t.Errorf("--list printed %q", out)
	}

	e.ok("tunnel", "route", "tcp", "--delete", "5432")
	e.fails("no tcp route for port 5432", "tunnel", "route", "tcp", "--delete", "5432")

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad port", []string{"web", "0"}, `port "0" is not a number from 1 to 65535`},
		{"port not a number", []string{"web", "ssh"}, `port "ssh"`},
		{"wildcard hostname", []string{"web", "22", "*.example.com"}, "not a wildcard"},
		{"unknown tunnel", []string{"nope", "22"}, `no tunnel "nope"`},
		{"too few arguments", []string{"web"}, "want a tunnel NAME or UUID, a PORT"},
		{"list with arguments", []string{"--list", "web"}, "--list: want no arguments"},
		{"delete without port", []string{"--delete"}, "--delete: want a PORT"},
		{"list and delete", []string{"--list", "--delete", "22"}, "do not go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.fails(tt.want, append([]string{"tunnel", "route", "tcp"}, tt.args...)...)
		})
	}
}

func TestAccessUsageErrors(t *testing.T) {
	e := newTestEdge(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no hostname", []string{"access", "tcp", "--url", "127.0.0.1:0"}, "--hostname is required"},
		{"bad header", []string{"access", "ssh", "--hostname", "h.example", "-H", "nocolon"}, `--header "nocolon"`},
		{"bad edge", []string{"access", "ssh", "--hostname", "h.example", "--edge", "edge.example.test:8080"}, "want http://"},
		{"bad destination", []string{"access", "ssh", "--hostname", "h.example", "--edge", "http://127.0.0.1:1", "--destination", "nope"}, "want host:port"},
		{"bad listener", []string{"access", "tcp", "-T", "h.example", "-L", "127.0.0.1:999999"}, "--url"},
		{"arguments", []string{"access", "tcp", "h.example"}, "no arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.fails(tt.want, tt.args...)
		})
	}
}
