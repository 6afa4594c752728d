package fleet

import (
	"strings"
	"testing"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/pki"
)

// FuzzCheckJoinResponse: whatever initial cluster a (hostile) edge
// answers, an accepted one names the new member at its own peer URL, and
// only members of well-formed name=https://host:port.
func FuzzCheckJoinResponse(f *testing.F) {
	ca, caKey, err := pki.NewCA("fuzz")
	if err != nil {
		f.Fatal(err)
	}
	tok, _ := NewToken(ca)
	req := control.JoinRequest{Name: "edge-b", PeerURL: "https://10.0.0.2:7846"}
	f.Add("edge-a=https://10.0.0.1:7846,edge-b=https://10.0.0.2:7846")
	f.Add("edge-b=https://10.0.0.2:7846")
	f.Add("edge-a=https://10.0.0.1:7846,edge-b=https://10.0.0.3:7846")
	f.Add("a=b,=,edge-b=https://10.0.0.2:7846")
	f.Add("edge-a=http://10.0.0.1:7846,edge-b=https://10.0.0.2:7846")
	f.Fuzz(func(t *testing.T, ic string) {
		err := CheckJoinResponse(control.JoinResponse{InitialCluster: ic, CACertPEM: string(ca), CAKeyPEM: string(caKey)}, tok, req)
		if err != nil {
			return
		}
		self := false
		for _, part := range strings.Split(ic, ",") {
			name, u, ok := strings.Cut(part, "=")
			if !ok || name == "" || strings.ContainsAny(name, "=, ") || !strings.HasPrefix(u, "https://") {
				t.Fatalf("accepted %q with member %q", ic, part)
			}
			if name == req.Name {
				self = self || u == req.PeerURL
			}
		}
		if !self {
			t.Fatalf("accepted %q without %s=%s", ic, req.Name, req.PeerURL)
		}
	})
}

// TestCheckJoinResponseCA: the answer's CA must be the pinned one, with
// its key.
func TestCheckJoinResponseCA(t *testing.T) {
	ca, caKey, _ := pki.NewCA("fleet")
	other, otherKey, _ := pki.NewCA("other")
	tok, _ := NewToken(ca)
	req := control.JoinRequest{Name: "b", PeerURL: "https://10.0.0.2:1"}
	ic := "a=https://10.0.0.1:1,b=https://10.0.0.2:1"
	for _, tc := range []struct {
		name      string
		cert, key []byte
		want      string
	}{
		{"pinned", ca, caKey, ""},
		{"another CA", other, otherKey, "not the one the join token pins"},
		{"another key", ca, otherKey, "the CA's key"},
		{"no CA", nil, nil, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckJoinResponse(control.JoinResponse{InitialCluster: ic, CACertPEM: string(tc.cert), CAKeyPEM: string(tc.key)}, tok, req)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}
