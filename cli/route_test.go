package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/adit-dev/adit/control"
)

// TestRouteListDelete: `tunnel route list [-o json]`, `tunnel route delete
// HOSTNAME` and the hostnames in `tunnel info`, against a real API.
func TestRouteListDelete(t *testing.T) {
	e := newTestEdge(t)
	e.ok("login", "--api", e.api, "--token-file", e.tokenFile, "--ca", e.caFile)
	if out := e.ok("tunnel", "route", "list"); !strings.Contains(out, "No routes.") {
		t.Errorf("route list with no routes = %q, want \"No routes.\"", out)
	}
	if out := e.ok("tunnel", "route", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("route list -o json with no routes = %q, want []", out)
	}
	webID := e.create("web")
	e.create("db")
	e.ok("tunnel", "route", "dns", "web", "b.example.com")
	e.ok("tunnel", "route", "dns", "web", "a.example.com")
	e.ok("tunnel", "route", "dns", "db", "*.db.example.com")

	out := e.ok("tunnel", "route", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "HOSTNAME TUNNEL ID TUNNEL NAME CREATED" {
		t.Fatalf("route list = %q, want a header and 3 routes", out)
	}
	if !strings.Contains(out, "a.example.com") || !strings.Contains(out, webID) || !strings.Contains(out, "*.db.example.com") {
		t.Errorf("route list = %q, want every hostname with its tunnel", out)
	}
	var routes []control.Route
	if err := json.Unmarshal([]byte(e.ok("tunnel", "route", "list", "-o", "json")), &routes); err != nil {
		t.Fatal(err)
	}
	if len(routes) != 3 {
		t.Fatalf("route list -o json = %+v, want 3 routes", routes)
	}

	info := e.ok("tunnel", "info", "web")
	if !strings.Contains(info, "HOSTNAMES: a.example.com, b.example.com\n") {
		t.Errorf("info = %q, want the line HOSTNAMES: a.example.com, b.example.com", info)
	}
	var ti struct {
		ID        string   `json:"id"`
		Hostnames []string `json:"hostnames"`
	}
	if err := json.Unmarshal([]byte(e.ok("tunnel", "info", "web", "-o", "json")), &ti); err != nil {
		t.Fatal(err)
	}
	if ti.ID != webID || strings.Join(ti.Hostnames, ",") != "a.example.com,b.example.com" {
		t.Errorf("info -o json = %+v, want %s with a.example.com,b.example.com", ti, webID)
	}

	if out := e.ok("tunnel", "route", "delete", "B.example.com."); out != "Removed route b.example.com\n" {
		t.Errorf("route delete printed %q", out)
	}
	e.fails("no route for b.example.com (see `adit tunnel route list`)", "tunnel", "route", "delete", "b.example.com")
	e.fails("route delete: ", "tunnel", "route", "delete", "not a host")
	e.fails("want a HOSTNAME", "tunnel", "route", "delete")
	if info := e.ok("tunnel", "info", "web"); !strings.Contains(info, "HOSTNAMES: a.example.com\n") {
		t.Errorf("info after delete = %q, want HOSTNAMES: a.example.com", info)
	}
	e.ok("tunnel", "route", "delete", "a.example.com")
	if info := e.ok("tunnel", "info", "web"); !strings.Contains(info, "HOSTNAMES: -\n") {
		t.Errorf("info without routes = %q, want HOSTNAMES: -", info)
	}
}
