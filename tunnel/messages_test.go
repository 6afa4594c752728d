package tunnel

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// newMessage returns a zero message of the same type as m.
func newMessage(m Message) Message {
	return reflect.New(reflect.TypeOf(m).Elem()).Interface().(Message)
}

// allMessages returns one zero value of every message type.
func allMessages() []Message {
	return []Message{
		&RegisterRequest{}, &RegisterResponse{}, &Unregister{}, &Disconnect{},
		&RequestHeader{}, &ResponseHeader{}, &Trailers{},
		&ConfigUpdate{}, &ConfigResult{},
		&EdgeList{}, &GoAway{}, &Heartbeat{},
		&PeerForward{}, &PeerReply{},
	}
}

// bigSecret is n bytes of a fixed pattern (samples encode the same way
// every time: golden_test.go).
func bigSecret(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// sampleMessages are filled-in messages of every type, used by the round-trip
// tests, as fuzz seeds and as benchmarks.
func sampleMessages() []struct {
	name string
	m    Message
} {
	return []struct {
		name string
		m    Message
	}{
		{"register/empty", &RegisterRequest{}},
		{"register/full", &RegisterRequest{
			TunnelID:    "6a1f2c3e-7b4d-4e8f-9a0b-1c2d3e4f5a6b",
			Secret:      bytes.Repeat([]byte{0xa5}, 32),
			ConnIndex:   3,
			ConnectorID: "0d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a",
			Version:     "adit 0.1.0",
			Features:    []string{"trailers", "", "serialized-headers"},
			Protocol:    2,
		}},
		{"register/large secret", &RegisterRequest{TunnelID: "t", Secret: bigSecret(64 << 10)}},
		{"register/max uint32", &RegisterRequest{ConnIndex: 1<<32 - 1, Protocol: 1<<32 - 1}},
		{"registered/ok", &RegisterResponse{ConnectionID: "c0ffee00-1111-4222-8333-444455556666", EdgeNode: "edge-a"}},
		{"registered/refused", &RegisterResponse{Error: "bad tunnel secret", Permanent: true}},
		{"registered/busy", &RegisterResponse{Error: "edge busy: 300 registrations waiting", RetryAfterMS: 2500}},
		{"unregister", &Unregister{Reason: "connector shutting down"}},
		{"edges", &EdgeList{Edges: []FleetEdge{
			{Name: "edge-a", Addr: "203.0.113.1:7844", Region: "eu"},
			{Name: "edge-b", Addr: "[2001:db8::2]:7844", Region: "us", Draining: true},
			{Addr: "edge-c.example.com:7844"},
		}}},
		{"edges/empty", &EdgeList{}},
		{"goaway", &GoAway{Reason: "edge draining"}},
		{"heartbeat", NewHeartbeat()},
		{"heartbeat/empty", &Heartbeat{}},
		{"registered/heartbeat", &RegisterResponse{ConnectionID: "c0ffee00-1111-4222-8333-444455556666", EdgeNode: "edge-a", HeartbeatMS: 2000}},
		{"unregister/empty", &Unregister{}},
		{"disconnect", &Disconnect{Reason: "tunnel deleted", Permanent: true}},
		{"disconnect/temporary", &Disconnect{Reason: "edge restarting"}},
		{"request/get", &RequestHeader{
			Type:       StreamHTTP,
			Method:     "GET",
			Host:       "app.example.com",
			Path:       "/a%20b?q=1&q=2",
			Header:     http.Header{"Accept": {"*/*"}, "Cookie": {"a=1", "b=2", ""}, "X-Empty": {""}},
			ClientAddr: "203.0.113.7:51234",
			RequestID:  "01J9ZQ3T",
		}},
		{"request/post unknown length", &RequestHeader{
			Type:          StreamHTTP,
			Method:        "POST",
			Host:          "grpc.example.com",
			Path:          "/pkg.Svc/Call",
			Header:        http.Header{"Content-Type": {"application/grpc"}, "Te": {"trailers"}},
			ContentLength: -1,
			Trailer:       []string{"Grpc-Status", "Grpc-Message"},
		}},
		{"request/content length", &RequestHeader{Type: StreamHTTP, Method: "PUT", ContentLength: 1 << 40}},
		{"request/websocket", &RequestHeader{Type: StreamWebSocket, Method: "GET", Host: "ws.example.com", Path: "/chat",
			Header: http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}}},
		{"request/tcp", &RequestHeader{Type: StreamTCP, Host: "ssh.example.com", ClientAddr: "[2001:db8::1]:40000"}},
		{"request/unknown stream type", &RequestHeader{Type: 99}},
		{"response/200", &ResponseHeader{Status: 200, Header: http.Header{"Content-Type": {"text/plain"}, "Set-Cookie": {"a=1", "b=2"}}, ContentLength: 5}},
		{"response/stream", &ResponseHeader{Status: 200, ContentLength: -1, Trailer: []string{"Grpc-Status"}}},
		{"response/error", &ResponseHeader{Status: 502, Error: "dial tcp 127.0.0.1:8080: connection refused"}},
		{"response/999", &ResponseHeader{Status: 999}},
		{"trailers", &Trailers{Header: http.Header{"Grpc-Status": {"0"}, "Grpc-Message": {""}}}},
		{"trailers/empty", &Trailers{}},
		{"config", &ConfigUpdate{Version: 3, Document: []byte("ingress:\n  - service: http_status:404\n")}},
		{"config/empty", &ConfigUpdate{}},
		{"config_result/applied", &ConfigResult{Version: 3}},
		{"config_result/refused", &ConfigResult{Version: 3, FailedVersion: 4, Error: "rule 1: unix socket /run/app.sock: no such file"}},
		{"config_result/local", &ConfigResult{Local: true}},
		{"peer_forward", &PeerForward{TunnelID: "6a1f2c3e-7b4d-4e8f-9a0b-1c2d3e4f5a6b", EntryNode: "edge-fra-1"}},
		{"peer_forward/empty", &PeerForward{}},
		{"peer_reply/ok", &PeerReply{}},
		{"peer_reply/refused", &PeerReply{Error: "edge-ams-2 has no connection for tunnel 6a1f2c3e-7b4d-4e8f-9a0b-1c2d3e4f5a6b"}},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	for _, tc := range sampleMessages() {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteMessage(&buf, tc.m); err != nil {
				t.Fatalf("WriteMessage: %v", err)
			}
			if got, want := FrameType(buf.Bytes()[0]), tc.m.frameType(); got != want {
				t.Errorf("frame type: got %s, want %s", got, want)
			}
			got := newMessage(tc.m)
			r := bufio.NewReader(&buf)
			if err := ReadMessage(r, got); err != nil {
				t.Fatalf("ReadMessage: %v", err)
			}
			if !reflect.DeepEqual(got, tc.m) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, tc.m)
			}
			if _, err := r.ReadByte(); err != io.EOF {
				t.Errorf("after the frame: got %v, want io.EOF", err)
			}
		})
	}
}

// TestDecodeReplacesOldValues checks that decoding into a used message does
// not leave fields of the earlier value behind.
func TestDecodeReplacesOldValues(t *testing.T) {
	m := &RequestHeader{Type: StreamTCP, Method: "GET", Header: http.Header{"A": {"1"}}, Trailer: []string{"X"}}
	if err := m.decode(nil); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, &RequestHeader{}) {
		t.Errorf("got %+v, want the zero RequestHeader", m)
	}
}

func TestDecodeCopiesBytes(t *testing.T) {
	in := &RegisterRequest{TunnelID: "tunnel", Secret: []byte("secret")}
	p := in.appendTo(nil)
	var got RegisterRequest
	if err := got.decode(p); err != nil {
		t.Fatal(err)
	}
	for i := range p {
		p[i] = 'X'
	}
	if got.TunnelID != "tunnel" || string(got.Secret) != "secret" {
		t.Errorf("after overwriting the payload: got %q %q, want %q %q", got.TunnelID, got.Secret, "tunnel", "secret")
	}
}

func TestReadMessageWrongType(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    Message
		r    Message
	}{
		{"register as registered", &RegisterRequest{TunnelID: "x"}, &RegisterResponse{}},
		{"response as request", &ResponseHeader{Status: 200}, &RequestHeader{}},
		{"trailers as disconnect", &Trailers{}, &Disconnect{}},
		{"unregister as disconnect", &Unregister{Reason: "bye"}, &Disconnect{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteMessage(&buf, tc.w); err != nil {
				t.Fatal(err)
			}
			err := ReadMessage(bufio.NewReader(&buf), tc.r)
			if err == nil {
				t.Fatalf("got nil error, want a wrong-type error")
			}
			want := "got " + tc.w.frameType().String() + " frame, want " + tc.r.frameType().String()
			if !strings.Contains(err.Error(), want) {
				t.Errorf("got %q, want it to contain %q", err, want)
			}
		})
	}
	t.Run("data frame", func(t *testing.T) {
		var buf bytes.Buffer
		WriteFrame(&buf, FrameData, []byte("hello"))
		if err := ReadMessage(bufio.NewReader(&buf), &RequestHeader{}); err == nil {
			t.Errorf("got nil error reading a data frame as a request header")
		}
	})
}

// unknownFields encodes one field of every wire type under numbers no
// message uses.
func unknownFields() []byte {
	var b []byte
	b = protowire.AppendTag(b, 100, protowire.VarintType)
	b = protowire.AppendVarint(b, 1<<63)
	b = protowire.AppendTag(b, 101, protowire.BytesType)
	b = protowire.AppendString(b, "from a newer peer")
	b = protowire.AppendTag(b, 102, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, 0xdeadbeef)
	b = protowire.AppendTag(b, 103, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, 0x0123456789abcdef)
	b = protowire.AppendTag(b, 104, protowire.StartGroupType)
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 7)
	b = protowire.AppendTag(b, 104, protowire.EndGroupType)
	return b
}

func TestDecodeSkipsUnknownFields(t *testing.T) {
	for _, tc := range sampleMessages() {
		t.Run(tc.name, func(t *testing.T) {
			// Unknown fields before, between (after the first known field) and
			// after the known ones.
			known := tc.m.appendTo(nil)
			var p []byte
			p = append(p, unknownFields()...)
			if len(known) > 0 {
				_, _, n := protowire.ConsumeField(known)
				p = append(p, known[:n]...)
				p = append(p, unknownFields()...)
				p = append(p, known[n:]...)
			}
			p = append(p, unknownFields()...)

			var buf bytes.Buffer
			if err := WriteFrame(&buf, tc.m.frameType(), p); err != nil {
				t.Fatal(err)
			}
			got := newMessage(tc.m)
			if err := ReadMessage(bufio.NewReader(&buf), got); err != nil {
				t.Fatalf("ReadMessage: %v", err)
			}
			if !reflect.DeepEqual(got, tc.m) {
				t.Errorf("got %+v, want %+v", got, tc.m)
			}
		})
	}
}

func TestDecodeUnknownFieldInHeaderPair(t *testing.T) {
	var pair []byte
	pair = protowire.AppendTag(pair, 1, protowire.BytesType)
	pair = protowire.AppendString(pair, "X-A")
	pair = append(pair, unknownFields()...)
	pair = protowire.AppendTag(pair, 2, protowire.BytesType)
	pair = protowire.AppendString(pair, "v")
	var p []byte
	p = protowire.AppendTag(p, 1, protowire.BytesType)
	p = protowire.AppendBytes(p, pair)
	var got Trailers
	if err := got.decode(p); err != nil {
		t.Fatal(err)
	}
	if want := (http.Header{"X-A": {"v"}}); !reflect.DeepEqual(got.Header, want) {
		t.Errorf("got %v, want %v", got.Header, want)
	}
}

// TestDecodeLastValueWins checks proto3 semantics for a repeated scalar field.
func TestDecodeLastValueWins(t *testing.T) {
	p := appendString(nil, 2, "GET")
	p = appendString(p, 2, "POST")
	var got RequestHeader
	if err := got.decode(p); err != nil {
		t.Fatal(err)
	}
	if got.Method != "POST" {
		t.Errorf("got method %q, want %q", got.Method, "POST")
	}
}

func TestDecodeErrors(t *testing.T) {
	tag := protowire.AppendTag
	pair := func(name, value string) []byte {
		b := appendStringAlways(nil, 1, name)
		return appendStringAlways(b, 2, value)
	}
	for _, tc := range []struct {
		name string
		m    Message
		p    []byte
	}{
		{"string as varint", &RegisterRequest{}, protowire.AppendVarint(tag(nil, 1, protowire.VarintType), 5)},
		{"varint as bytes", &RegisterRequest{}, protowire.AppendString(tag(nil, 3, protowire.BytesType), "3")},
		{"reason as varint", &Disconnect{}, protowire.AppendVarint(tag(nil, 1, protowire.VarintType), 1)},
		{"header as varint", &RequestHeader{}, protowire.AppendVarint(tag(nil, 5, protowire.VarintType), 1)},
		{"header without name", &RequestHeader{}, protowire.AppendBytes(tag(nil, 5, protowire.BytesType), pair("", "v"))},
		{"header name as varint", &Trailers{}, protowire.AppendBytes(tag(nil, 1, protowire.BytesType),
			protowire.AppendVarint(tag(nil, 1, protowire.VarintType), 1))},
		{"header pair truncated", &ResponseHeader{}, protowire.AppendBytes(tag(nil, 2, protowire.BytesType), pair("Name", "value")[:5])},
		{"status 1000", &ResponseHeader{}, protowire.AppendVarint(tag(nil, 1, protowire.VarintType), 1000)},
		{"status huge", &ResponseHeader{}, protowire.AppendVarint(tag(nil, 1, protowire.VarintType), 1<<63)},
		{"truncated tag", &RequestHeader{}, []byte{0x80}},
		{"field number 0", &RequestHeader{}, []byte{0x00, 0x01}},
		{"truncated varint", &RequestHeader{}, []byte{0x08, 0x80}},
		{"truncated bytes", &RequestHeader{}, []byte{0x12, 0x05, 'G', 'E'}},
		{"truncated fixed32", &RequestHeader{}, []byte{0x65, 0x01, 0x02}},
		{"truncated fixed64", &RequestHeader{}, []byte{0x61, 0x01, 0x02, 0x03}},
		{"end group without start", &Unregister{}, tag(nil, 9, protowire.EndGroupType)},
		{"unterminated group", &Unregister{}, tag(nil, 9, protowire.StartGroupType)},
		{"reserved wire type", &Unregister{}, []byte{0x0e}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			WriteFrame(&buf, tc.m.frameType(), tc.p)
			err := ReadMessage(bufio.NewReader(&buf), tc.m)
			if err == nil {
				t.Fatalf("payload %x: got nil error, want a decode error", tc.p)
			}
			if !strings.HasPrefix(err.Error(), "tunnel: bad message") {
				t.Errorf("got %q, want it to start with %q", err, "tunnel: bad message")
			}
		})
	}
}

// TestReadMessageTruncated cuts a frame at every length: an empty stream is
// io.EOF, anything else io.ErrUnexpectedEOF, never a panic or a short value.
func TestReadMessageTruncated(t *testing.T) {
	for _, tc := range sampleMessages() {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteMessage(&buf, tc.m); err != nil {
				t.Fatal(err)
			}
			full := buf.Bytes()
			step := 1
			if len(full) > 4096 {
				step = 97 // the large secret: enough cuts, still fast
			}
			for n := 0; n < len(full); n += step {
				err := ReadMessage(bufio.NewReader(bytes.NewReader(full[:n])), newMessage(tc.m))
				want := io.ErrUnexpectedEOF
				if n == 0 {
					want = io.EOF
				}
				if !errors.Is(err, want) {
					t.Fatalf("cut at %d of %d: got %v, want %v", n, len(full), err, want)
				}
			}
		})
	}
}

func TestFrameTypeString(t *testing.T) {
	for _, tc := range []struct {
		t    FrameType
		want string
	}{
		{FrameRegister, "register"}, {FrameRegistered, "registered"}, {FrameUnregister, "unregister"},
		{FrameDisconnect, "disconnect"}, {FrameRequest, "request"}, {FrameResponse, "response"},
		{FrameData, "data"}, {FrameTrailers, "trailers"}, {FrameEnd, "end"}, {0xff, "frame(0xff)"},
	} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("FrameType(0x%02x): got %q, want %q", uint8(tc.t), got, tc.want)
		}
	}
}

func TestStreamTypeString(t *testing.T) {
	for _, tc := range []struct {
		t    StreamType
		want string
	}{
		{StreamHTTP, "http"}, {StreamWebSocket, "websocket"}, {StreamTCP, "tcp"}, {0, "stream(0)"}, {42, "stream(42)"},
	} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("StreamType(%d): got %q, want %q", uint32(tc.t), got, tc.want)
		}
	}
}

func TestCloseErrorString(t *testing.T) {
	for _, tc := range []struct {
		e    CloseError
		want string
	}{
		{CloseError{Code: CodeTunnelDeleted, Reason: "tunnel deleted", Remote: true}, "tunnel: connection closed by peer (code 3): tunnel deleted"},
		{CloseError{Code: CodeNormal, Reason: "bye"}, "tunnel: connection closed by local (code 0): bye"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

// TestDecodeMessage reads frames of any type with ReadFrame and decodes them
// by type, as a control-stream loop does.
func TestDecodeMessage(t *testing.T) {
	var buf bytes.Buffer
	want := []Message{&Unregister{Reason: "draining"}, &Disconnect{Reason: "deleted", Permanent: true}}
	for _, m := range want {
		if err := WriteMessage(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(&buf)
	for i, w := range want {
		typ, p, err := ReadFrame(r)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if typ != w.frameType() {
			t.Fatalf("frame %d: got %s, want %s", i, typ, w.frameType())
		}
		got := newMessage(w)
		if err := DecodeMessage(p, got); err != nil {
			t.Fatalf("frame %d: DecodeMessage: %v", i, err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("frame %d: got %+v, want %+v", i, got, w)
		}
	}
	if err := DecodeMessage([]byte{0x0a, 0x05}, &Unregister{}); err == nil {
		t.Error("DecodeMessage of a truncated payload: got nil error")
	}
}

func TestIsUpgrade(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.Header
		want bool
	}{
		{"websocket", http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}}, true},
		{"token among others", http.Header{"Upgrade": {"h2c"}, "Connection": {"keep-alive, upgrade"}}, true},
		{"token in a second field", http.Header{"Upgrade": {"x"}, "Connection": {"close", " Upgrade "}}, true},
		{"no Upgrade field", http.Header{"Connection": {"upgrade"}}, false},
		{"no upgrade token", http.Header{"Upgrade": {"websocket"}, "Connection": {"keep-alive"}}, false},
		{"token inside another", http.Header{"Upgrade": {"websocket"}, "Connection": {"upgrades"}}, false},
		{"empty", http.Header{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsUpgrade(tc.h); got != tc.want {
				t.Errorf("IsUpgrade(%v): got %v, want %v", tc.h, got, tc.want)
			}
		})
	}
}

// TestDecodeCanonicalizesNames: header names are canonicalized on decode,
// so two spellings of one name are one field; names that are not tokens
// stay as sent (net/http's rule), for the receiver to refuse.
func TestDecodeCanonicalizesNames(t *testing.T) {
	in := &ResponseHeader{Status: 200, Header: http.Header{
		"content-length": {"5"},
		"Content-Length": {"7"},
		"x-lower":        {"v"},
		"bad name":       {"x"},
	}}
	var got ResponseHeader
	if err := got.decode(in.appendTo(nil)); err != nil {
		t.Fatal(err)
	}
	if cl := got.Header["Content-Length"]; len(cl) != 2 {
		t.Errorf("Content-Length: got %q, want both values under one name", cl)
	}
	for _, name := range []string{"X-Lower", "bad name"} {
		if _, ok := got.Header[name]; !ok {
			t.Errorf("%q missing from %v", name, got.Header)
		}
	}
	if len(got.Header) != 3 {
		t.Errorf("got names %v, want Content-Length, X-Lower, bad name", got.Header)
	}
}
