package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
)

// fleetProgram has an `edge` group holding FleetCommands, as adit's does.
var fleetProgram = Program{Commands: []Command{func(g *Env) *cobra.Command {
	c := &cobra.Command{Use: "edge"}
	c.AddCommand(FleetCommands(g)...)
	return c
}}}

func (e *testEdge) runFleet(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), fleetProgram, append([]string{"--home", e.home}, args...), &out, &errOut)
	return out.String(), errOut.String(), code
}

// TestEdgeList: `adit edge list` shows the registry's edges as a table
// and as JSON.
func TestEdgeList(t *testing.T) {
	e := newTestEdge(t)
	api := []string{"--api", e.api, "--token-file", e.tokenFile, "--ca", e.caFile}
	out, errOut, code := e.runFleet(append([]string{"edge", "list"}, api...)...)
	if code != 0 || out != "No live edges.\n" {
		t.Fatalf("empty: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	started := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
	for _, n := range []control.EdgeNode{
		{Name: "edge-b", Region: "us-east", Version: "v1", Started: started, PublicAddrs: []string{"192.0.2.2:80"},
			HTTPAddr: "192.0.2.2:80", TunnelAddr: "192.0.2.2:7844", APIAddr: "192.0.2.2:7845", Health: control.EdgeHealthDraining},
		{Name: "edge-a", Version: "v1", Started: started, PublicAddrs: []string{"192.0.2.1:80", "192.0.2.1:443"},
			HTTPAddr: "192.0.2.1:80", HTTPSAddr: "192.0.2.1:443", TunnelAddr: "192.0.2.1:7844", APIAddr: "192.0.2.1:7845", Health: control.EdgeHealthOK},
	} {
		b, _ := json.Marshal(n)
		if _, err := e.st.Client().Put(context.Background(), store.EdgeKey(n.Name), string(b)); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code = e.runFleet(append([]string{"edge", "list"}, api...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := `NAME     REGION    PUBLIC                       TUNNEL           API              VERSION   HEALTH     SINCE
edge-a   -         192.0.2.1:80,192.0.2.1:443   192.0.2.1:7844   192.0.2.1:7845   v1        ok         2026-12-02T07:00:00Z
edge-b   us-east   192.0.2.2:80                 192.0.2.2:7844   192.0.2.2:7845   v1        draining   2026-12-02T07:00:00Z
`
	if out != want {
		t.Errorf("table:\n%s\nwant:\n%s", out, want)
	}
	out, _, _ = e.runFleet(append([]string{"edge", "list", "-o", "json"}, api...)...)
	var got []control.EdgeNode
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 2 || got[0].Name != "edge-a" || got[1].Region != "us-east" {
		t.Errorf("json: got %s (%v)", out, err)
	}
	_, errOut, code = e.runFleet(append([]string{"edge", "list", "x"}, api...)...)
	if code != 1 || !strings.Contains(errOut, "edge list: want no arguments") {
		t.Errorf("with an argument: exit %d, stderr %q", code, errOut)
	}
}
