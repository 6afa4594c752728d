package edge

import (
	"bufio"
	"bytes"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/adit-dev/adit/tunnel"
)

const testTunnelID = "6a1f2c3e-7b4d-4e8f-9a0b-1c2d3e4f5a6b"

// forwardFrames encodes a forwarded stream's first two frames.
func forwardFrames(t testing.TB, fwd *tunnel.PeerForward, rh *tunnel.RequestHeader) []byte {
	t.Helper()
	b, err := tunnel.AppendMessage(nil, fwd)
	if err != nil {
		t.Fatal(err)
	}
	b, err = tunnel.AppendMessage(b, rh)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func goodHeader() tunnel.RequestHeader {
	return tunnel.RequestHeader{
		Type:       tunnel.StreamHTTP,
		Method:     "GET",
		Host:       "app.example.com",
		Path:       "/a?b=1",
		Header:     http.Header{"Accept": {"*/*"}, "X-Forwarded-For": {"203.0.113.7"}},
		ClientAddr: "203.0.113.7:40000",
		RequestID:  "0123456789abcdef",
	}
}

// TestReadForward: a forwarded stream's first frames are checked field by
// field; each bad field is refused with its name.
func TestReadForward(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fwd     tunnel.PeerForward
		mod     func(*tunnel.RequestHeader)
		wantErr string
	}{
		{"http", tunnel.PeerForward{TunnelID: testTunnelID, EntryNode: "edge-a"}, nil, ""},
		{"tcp", tunnel.PeerForward{TunnelID: testTunnelID, EntryNode: "edge-a"}, func(h *tunnel.RequestHeader) {
			*h = tunnel.RequestHeader{Type: tunnel.StreamTCP, Host: "ssh.example.com", ClientAddr: "[2001:db8::1]:4000", RequestID: "x1"}
		}, ""},
		{"visitor named by a trusted proxy", tunnel.PeerForward{TunnelID: testTunnelID, EntryNode: "edge-a"}, func(h *tunnel.RequestHeader) { h.ClientAddr = "198.51.100.1" }, ""},
		{"tunnel id not a uuid", tunnel.PeerForward{TunnelID: "../x", EntryNode: "edge-a"}, nil, "tunnel_id"},
		{"tunnel id not canonical", tunnel.PeerForward{TunnelID: strings.ToUpper(testTunnelID), EntryNode: "edge-a"}, nil, "tunnel_id"},
		{"entry node not the link's", tunnel.PeerForward{TunnelID: testTunnelID, EntryNode: "edge-b"}, nil, "entry_node"},
		{"stream type", tunnel.PeerForward{TunnelID: testTunnelID, EntryNode: "edge-a"}, func(h *tunnel.RequestHeader) { h.Type = 9 }, "stream type"},
		{"method", tunnel.PeerForward{TunnelID: testTunnelID, EntryNode: "edge-a"}, func(h *tunnel.RequestHeader) { h.Method = "G T" }, "method"},
		{"path", tunnel.PeerForward{TunnelID: testTunnelID, EntryNode: "edge-a"}, func(h *tunnel.RequestHeader) { h.Path = "http://x/" }, "path"},
		{"host", tunnel.PeerForward{TunnelID: testTunnelID, EntryNode: "edge-a"}, func(h *tunnel.RequestHeader) { h.Host = "a b" }, "host"},
		{"header name", tunnel.PeerForward{TunnelID: testTunnelID, EntryNode: "edge-a"}, func(h *tunnel.RequestHeader) { h.Header["Bad Name"] = []string{"v"} }, "header name"},
		{"header value", tunnel.PeerForward{TunnelID: testTunnelID, EntryNode: "edge-a"}, func(h *tunnel.RequestHeader) { h.Header["X"] = []string{"a\r\nb: c"} }, "header X"},
		{"request id", tunnel.PeerForward{TunnelID: testTunnelID, EntryNode: "edge-a"}, func(h *tunnel.RequestHeader) { h.RequestID = "" }, "request_id"},
		{"client addr", tunnel.PeerForward{TunnelID: testTunnelID, EntryNode: "edge-a"}, func(h *tunnel.RequestHeader) { h.ClientAddr = "nowhere" }, "client_addr"},
		{"content length", tunnel.PeerForward{TunnelID: testTunnelID, EntryNode: "edge-a"}, func(h *tunnel.RequestHeader) { h.ContentLength = -2 }, "content_length"},
		{"tcp with a path", tunnel.PeerForward{TunnelID: testTunnelID, EntryNode: "edge-a"}, func(h *tunnel.RequestHeader) { h.Type = tunnel.StreamTCP }, "tcp stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rh := goodHeader()
			if tc.mod != nil {
				tc.mod(&rh)
			}
			fwd, got, err := readForward(bufio.NewReader(bytes.NewReader(forwardFrames(t, &tc.fwd, &rh))), "edge-a")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fwd != tc.fwd || !reflect.DeepEqual(got, rh) {
				t.Errorf("got %+v %+v, want %+v %+v", fwd, got, tc.fwd, rh)
			}
		})
	}
	// A peer_forward frame past its bound is not read.
	big := forwardFrames(t, &tunnel.PeerForward{TunnelID: testTunnelID, EntryNode: strings.Repeat("x", tunnel.MaxPeerForward)}, &tunnel.RequestHeader{})
	if _, _, err := readForward(bufio.NewReader(bytes.NewReader(big)), "edge-a"); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Errorf("a %d-byte peer_forward: got %v, want too large", len(big), err)
	}
}

// FuzzReadForward: whatever readForward accepts is a canonical tunnel ID
// from the link's edge and a request header that passes its checks again
// after a round trip through the encoder (what the holding edge sends its
// connector).
func FuzzReadForward(f *testing.F) {
	rh := goodHeader()
	f.Add(forwardFrames(f, &tunnel.PeerForward{TunnelID: testTunnelID, EntryNode: "edge-a"}, &rh))
	tcp := tunnel.RequestHeader{Type: tunnel.StreamTCP, Host: "ssh.example.com", ClientAddr: "127.0.0.1:1", RequestID: "r"}
	f.Add(forwardFrames(f, &tunnel.PeerForward{TunnelID: testTunnelID, EntryNode: "edge-a"}, &tcp))
	f.Add(forwardFrames(f, &tunnel.PeerForward{TunnelID: "x", EntryNode: "edge-a"}, &rh))
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		fwd, rh, err := readForward(bufio.NewReader(bytes.NewReader(data)), "edge-a")
		if err != nil {
			return
		}
		if id, err := uuid.Parse(fwd.TunnelID); err != nil || id.String() != fwd.TunnelID || fwd.EntryNode != "edge-a" {
			t.Fatalf("accepted peer_forward %+v", fwd)
		}
		b, err := tunnel.AppendMessage(nil, &rh)
		if err != nil {
			t.Fatalf("re-encoding an accepted header: %v", err)
		}
		var again tunnel.RequestHeader
		if err := tunnel.ReadMessage(bufio.NewReader(bytes.NewReader(b)), &again); err != nil {
			t.Fatalf("decoding the re-encoded header: %v", err)
		}
		if !reflect.DeepEqual(again, rh) {
			t.Fatalf("round trip: got %+v, want %+v", again, rh)
		}
		if err := checkForwarded(&again); err != nil {
			t.Fatalf("the re-encoded header fails its checks: %v", err)
		}
	})
}
