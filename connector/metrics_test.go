package connector

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/adit-dev/adit/tunnel"
)

func encodeResponse(t testing.TB, rh *tunnel.ResponseHeader) []byte {
	var b bytes.Buffer
	if err := tunnel.WriteMessage(&b, rh); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestResponseStatus(t *testing.T) {
	cases := []struct {
		name   string
		frame  []byte
		status int
		ok     bool
	}{
		{"ok", encodeResponse(t, &tunnel.ResponseHeader{Status: 200, Header: http.Header{"A": {"b"}}, ContentLength: -1}), 200, true},
		{"error", encodeResponse(t, &tunnel.ResponseHeader{Status: 502, Error: "dial tcp: refused"}), 502, true},
		{"data frame", []byte{byte(tunnel.FrameData), 2, 'h', 'i'}, 0, false},
		{"truncated", encodeResponse(t, &tunnel.ResponseHeader{Status: 404})[:2], 0, false},
		{"empty", nil, 0, false},
	}
	for _, c := range cases {
		got, ok := responseStatus(c.frame)
		if got != c.status || ok != c.ok {
			t.Errorf("%s: got %d, %v; want %d, %v", c.name, got, ok, c.status, c.ok)
		}
	}
}

// FuzzResponseStatus: the status read from an encoded response header is
// the one encoded, whatever the other fields; arbitrary bytes never panic
// and never yield an impossible status.
func FuzzResponseStatus(f *testing.F) {
	f.Add([]byte{byte(tunnel.FrameResponse), 3, 8, 200, 1}, uint16(200), "Content-Type", "text/plain", "")
	f.Add(encodeResponse(f, &tunnel.ResponseHeader{Status: 101, Header: http.Header{"Upgrade": {"websocket"}}}), uint16(502), "", "", "origin unreachable")
	f.Add([]byte{0x11, 0xff, 0xff, 0xff, 0xff, 0x0f}, uint16(999), "X", "y", "z")
	f.Fuzz(func(t *testing.T, data []byte, status uint16, name, value, msg string) {
		if s, ok := responseStatus(data); ok && (s < 0 || s > 999) {
			t.Errorf("responseStatus(%x) = %d, impossible", data, s)
		}
		status = 100 + status%900
		rh := &tunnel.ResponseHeader{Status: int(status), Error: msg, ContentLength: -1}
		if name != "" {
			rh.Header = http.Header{name: {value}}
		}
		var b bytes.Buffer
		if err := tunnel.WriteMessage(&b, rh); err != nil {
			return // too large
		}
		if got, ok := responseStatus(b.Bytes()); !ok || got != int(status) {
			t.Errorf("round trip: got %d, %v; want %d, true", got, ok, status)
		}
	})
}
