package controlserver

import (
	"encoding/json"
	"testing"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/store"
)

// FuzzDecodeEdge: a registry record decodes only if it names the node its
// key does, and then re-encodes to a record that decodes the same.
func FuzzDecodeEdge(f *testing.F) {
	rec, _ := json.Marshal(control.EdgeNode{Name: "edge-a", Region: "eu", TunnelAddr: "192.0.2.1:7844", Health: control.EdgeHealthOK})
	f.Add(store.EdgeKey("edge-a"), string(rec))
	f.Add(store.EdgeKey("edge-b"), string(rec))
	f.Add(store.EdgeKey(""), `{"name":""}`)
	f.Add("/adit/other/edge-a", string(rec))
	f.Add(store.EdgeKey("x"), `{"name":"x","public_addrs":null}`)
	f.Fuzz(func(t *testing.T, key, val string) {
		e, ok := DecodeEdge([]byte(key), []byte(val))
		if !ok {
			return
		}
		if e.Name == "" || store.EdgeKey(e.Name) != key {
			t.Fatalf("DecodeEdge(%q) accepted a record named %q", key, e.Name)
		}
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		again, ok := DecodeEdge([]byte(key), b)
		if !ok || again.Name != e.Name || again.TunnelAddr != e.TunnelAddr || again.Health != e.Health {
			t.Fatalf("round trip of %q: %+v, %v", b, again, ok)
		}
	})
}
