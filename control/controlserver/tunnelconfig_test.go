package controlserver

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/ingress"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const twoRules = `# the web tier
ingress:
  - hostname: app.example.com
    service: http://localhost:8000
  - service: http_status:404
`

// TestTunnelConfigValidatorMessages: the edge refuses every bad config of
// ingress/testdata with exactly the validator's message and line (what
// `tunnel ingress validate` prints, less its file name), and accepts every
// good one that holds only rules.
func TestTunnelConfigValidatorMessages(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	if _, err := svc.CreateTunnel(ctx, "web", secret(1)); err != nil {
		t.Fatal(err)
	}
	bad, _ := filepath.Glob("../../ingress/testdata/bad/*.yml")
	if len(bad) == 0 {
		t.Fatal("no ingress/testdata/bad")
	}
	for _, file := range bad {
		doc, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		cfg, verr := ingress.Load(file)
		if verr == nil {
			_, verr = ingress.New(cfg)
		}
		want := strings.Replace(verr.Error(), file+": ", "", 1)
		_, err = svc.SetTunnelConfig(ctx, "web", control.TunnelConfigRequest{YAML: string(doc)})
		if !errors.Is(err, control.ErrInvalid) || err.Error() != want {
			t.Errorf("%s: got %v\nwant %s", filepath.Base(file), err, want)
		}
	}
	if h, err := svc.TunnelConfigHistory(ctx, "web"); err != nil || len(h) != 0 {
		t.Errorf("after refusals only: history %v, %v; want none", h, err)
	}
	good, _ := filepath.Glob("../../ingress/testdata/good/*.yml")
	for _, file := range good {
		doc, _ := os.ReadFile(file)
		_, err := svc.SetTunnelConfig(ctx, "web", control.TunnelConfigRequest{YAML: string(doc)})
		// A file is accepted, or refused only for its connector settings
		// (tunnel, credentials-file, url, ...), which belong to the
		// connector's machine.
		if err != nil && !strings.Contains(err.Error(), "set where the connector runs") {
			t.Errorf("%s: %v", filepath.Base(file), err)
		}
	}
}

func TestTunnelConfigVersions(t *testing.T) {
	svc, cli := newService(t)
	ctx := context.Background()
	tun, err := svc.CreateTunnel(ctx, "web", secret(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.GetTunnelConfig(ctx, "web", 0); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("get before any: %v, want not found", err)
	}
	v1, err := svc.SetTunnelConfig(ctx, "web", control.TunnelConfigRequest{YAML: twoRules})
	if err != nil || v1.Version != 1 || v1.Rules != 2 || v1.YAML != twoRules || v1.TunnelID != tun.ID {
		t.Fatalf("set: %+v, %v", v1, err)
	}
	// Cloudflare's JSON shape, with a duration in seconds.
	cf := `{"ingress":[{"hostname":"api.example.com","service":"http://localhost:9000","originRequest":{"connectTimeout":10}},{"service":"http_status:404"}],"originRequest":{"noTLSVerify":true},"warp-routing":{"enabled":false}}`
	v2, err := svc.SetTunnelConfig(ctx, tun.ID, control.TunnelConfigRequest{Config: json.RawMessage(cf)})
	if err != nil || v2.Version != 2 {
		t.Fatalf("set Cloudflare JSON: %+v, %v", v2, err)
	}
	var shape struct {
		Ingress []struct {
			Hostname, Service string
			OriginRequest     map[string]any `json:"originRequest"`
		} `json:"ingress"`
		OriginRequest map[string]any `json:"originRequest"`
	}
	if err := json.Unmarshal(v2.Config, &shape); err != nil || len(shape.Ingress) != 2 || shape.Ingress[0].Hostname != "api.example.com" ||
		shape.OriginRequest["noTLSVerify"] != true || shape.Ingress[0].OriginRequest["connectTimeout"] != "10s" {
		t.Errorf("config JSON: %s (%v)", v2.Config, err)
	}
	if _, err := svc.SetTunnelConfig(ctx, "web", control.TunnelConfigRequest{Config: json.RawMessage(`{"ingress":[{"hostname":"a.example.com","service":"htp://x"},{"service":"http_status:404"}]}`)}); err == nil ||
		!strings.Contains(err.Error(), `rule 1: service "htp://x": unknown scheme "htp"`) {
		t.Errorf("bad Cloudflare JSON: %v", err)
	}
	if _, err := svc.SetTunnelConfig(ctx, "web", control.TunnelConfigRequest{YAML: "protocol: quic\n" + twoRules}); err == nil ||
		err.Error() != "ingress: protocol: set where the connector runs, not in the tunnel's remote configuration (which holds ingress, originRequest, warp-routing) (line 1)" {
		t.Errorf("connector setting: %v", err)
	}

	got, err := svc.GetTunnelConfig(ctx, "web", 1)
	if err != nil || got.YAML != twoRules || got.Change != "set" {
		t.Errorf("get version 1: %+v, %v", got, err)
	}
	rb, err := svc.RollbackTunnelConfig(ctx, "web", 1)
	if err != nil || rb.Version != 3 || rb.YAML != twoRules || rb.Change != "rollback to 1" {
		t.Errorf("rollback: %+v, %v", rb, err)
	}
	if _, err := svc.RollbackTunnelConfig(ctx, "web", 9); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("rollback to a missing version: %v", err)
	}
	hist, err := svc.TunnelConfigHistory(ctx, "web")
	if err != nil || len(hist) != 3 || hist[0].Version != 3 || hist[2].Version != 1 || hist[0].YAML != "" {
		t.Errorf("history: %+v, %v", hist, err)
	}

	// Bounded history: the oldest versions go.
	for range control.MaxConfigHistory {
		if _, err := svc.SetTunnelConfig(ctx, "web", control.TunnelConfigRequest{YAML: twoRules}); err != nil {
			t.Fatal(err)
		}
	}
	hist, _ = svc.TunnelConfigHistory(ctx, "web")
	if len(hist) != control.MaxConfigHistory || hist[0].Version != control.MaxConfigHistory+3 || hist[len(hist)-1].Version != 4 {
		t.Errorf("history after %d more: %d versions, %d..%d", control.MaxConfigHistory, len(hist), hist[len(hist)-1].Version, hist[0].Version)
	}
	if _, err := svc.GetTunnelConfig(ctx, "web", 1); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("version 1 after it fell out: %v", err)
	}

	// Deleting the tunnel deletes its configurations.
	if err := svc.DeleteTunnel(ctx, tun.ID, false); err != nil {
		t.Fatal(err)
	}
	if resp, err := cli.Get(ctx, "/adit/tunnel-config", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 0 {
		t.Errorf("configuration keys left after the tunnel was deleted: %v, %v", resp, err)
	}
}

func TestPublishUnpublish(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	tun, _ := svc.CreateTunnel(ctx, "web", secret(1))
	other, _ := svc.CreateTunnel(ctx, "other", secret(2))

	v, err := svc.Publish(ctx, "web", control.PublishRequest{Hostname: "App.example.com", Service: "http://localhost:8000"})
	if err != nil || v.Version != 1 || v.Rules != 2 || v.Change != "publish app.example.com" {
		t.Fatalf("publish on an empty tunnel: %+v, %v", v, err)
	}
	v, err = svc.Publish(ctx, "web", control.PublishRequest{Hostname: "app.example.com", Service: "http://localhost:9000", Path: "^/api/"})
	if err != nil || v.Rules != 3 {
		t.Fatalf("publish a path: %+v, %v", v, err)
	}
	v, err = svc.Publish(ctx, "web", control.PublishRequest{Hostname: "app.example.com", Service: "http://localhost:8001"})
	if err != nil || v.Rules != 3 {
		t.Fatalf("publish the same hostname again replaces its rule: %+v, %v", v, err)
	}
	cfg, err := ingress.Parse([]byte(v.YAML))
	if err != nil || cfg.Ingress[0].Service != "http://localhost:8001" || cfg.Ingress[1].Path != "^/api/" || cfg.Ingress[2].Service != "http_status:404" {
		t.Errorf("rules after three publishes: %s (%v)", v.YAML, err)
	}
	routes, _ := svc.ListRoutes(ctx)
	if len(routes) != 1 || routes[0].Hostname != "app.example.com" || routes[0].TunnelID != tun.ID {
		t.Errorf("routes: %+v", routes)
	}
	if _, err := svc.Publish(ctx, "other", control.PublishRequest{Hostname: "app.example.com", Service: "http://localhost:1"}); !errors.Is(err, control.ErrConflict) {
		t.Errorf("publishing another tunnel's hostname: %v, want a conflict", err)
	}
	if h, _ := svc.TunnelConfigHistory(ctx, other.ID); len(h) != 0 {
		t.Errorf("a refused publish stored a version: %+v", h)
	}
	if _, err := svc.Publish(ctx, "web", control.PublishRequest{Hostname: "b.example.com", Service: "ftp://x"}); !errors.Is(err, control.ErrInvalid) {
		t.Errorf("publish with a bad service: %v", err)
	}
	if routes, _ := svc.ListRoutes(ctx); len(routes) != 1 {
		t.Errorf("a refused publish routed its hostname: %+v", routes)
	}

	v, err = svc.Unpublish(ctx, "web", "app.example.com")
	if err != nil || v.Rules != 1 {
		t.Fatalf("unpublish: %+v, %v", v, err)
	}
	if routes, _ := svc.ListRoutes(ctx); len(routes) != 0 {
		t.Errorf("routes after unpublish: %+v", routes)
	}
	if _, err := svc.Unpublish(ctx, "web", "app.example.com"); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("unpublish twice: %v", err)
	}
}
