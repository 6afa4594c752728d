package tunnel

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	"golang.org/x/net/http/httpguts"
	"google.golang.org/protobuf/encoding/protowire"
)

// RegisterRequest is the connector's first frame (FrameRegister).
type RegisterRequest struct {
	TunnelID    string   // 1: the tunnel's UUID
	Secret      []byte   // 2: the tunnel secret; sent only inside TLS 1.3 to a verified edge
	ConnIndex   uint32   // 3: HA slot, 0..N-1
	ConnectorID string   // 4: UUID picked by the connector process at start
	Version     string   // 5: connector software version
	Features    []string // 6: optional features the connector supports
	Protocol    uint32   // 7: ProtocolVersion of the connector
}

// RegisterResponse answers a RegisterRequest (FrameRegistered). Exactly one of
// ConnectionID or Error is set.
type RegisterResponse struct {
	ConnectionID string // 1: edge-assigned UUID of this connection
	EdgeNode     string // 2: name of the edge node
	Error        string // 3: why the registration was refused
	Permanent    bool   // 4: true if retrying cannot help (bad secret, unknown or deleted tunnel)
	// RetryAfterMS (5, version 4), on a refusal that is not permanent:
	// the edge is busy (too many registrations at once) and asks the
	// connector to register on it again no sooner than this many
	// milliseconds from now, plus jitter. Zero: no advice.
	RetryAfterMS uint32
	// HeartbeatMS (6, version 5), on a registration of a connection whose
	// connector announced FeatureHeartbeat: the edge sends no keepalives
	// on it and expects a Heartbeat at least this often on one of the
	// connector's connections to it (heartbeat.go). Zero: the edge keeps
	// the connection alive itself, as before version 5.
	HeartbeatMS uint32
}

// Unregister asks the edge to send no new requests on this connection
// (FrameUnregister). Streams in flight continue.
type Unregister struct {
	Reason string // 1
}

// Disconnect tells the connector the edge is ending this connection
// (FrameDisconnect).
type Disconnect struct {
	Reason    string // 1
	Permanent bool   // 2: the tunnel is gone; do not reconnect
}

// StreamType says how a request stream carries its payload.
type StreamType uint32

// Stream types.
const (
	StreamHTTP      StreamType = 1 // framed bodies, trailers
	StreamWebSocket StreamType = 2 // HTTP upgrade; raw bytes after a 101
	StreamTCP       StreamType = 3 // raw bytes after a 200
)

func (t StreamType) String() string {
	switch t {
	case StreamHTTP:
		return "http"
	case StreamWebSocket:
		return "websocket"
	case StreamTCP:
		return "tcp"
	}
	return fmt.Sprintf("stream(%d)", uint32(t))
}

// RequestHeader opens a request stream (FrameRequest).
type RequestHeader struct {
	Type          StreamType  // 1
	Method        string      // 2
	Host          string      // 3: the public hostname the client asked for
	Path          string      // 4: request URI: escaped path and query
	Header        http.Header // 5: repeated Field{1 name, 2 value}; order of values kept
	ClientAddr    string      // 6: the client's ip:port as the edge saw it
	RequestID     string      // 7: shown on error pages and in both logs
	ContentLength int64       // 8: zigzag; -1 if unknown
	Trailer       []string    // 9: names of trailers the body will end with
}

// ResponseHeader answers a request (FrameResponse).
type ResponseHeader struct {
	Status        int         // 1
	Header        http.Header // 2: repeated Field{1 name, 2 value}
	Error         string      // 3: set when the connector could not reach the origin
	Trailer       []string    // 4: names of trailers the body will end with
	ContentLength int64       // 5: zigzag; -1 if unknown
}

// Trailers ends a body with trailer fields (FrameTrailers).
type Trailers struct {
	Header http.Header // 1: repeated Field{1 name, 2 value}
}

func (*RegisterRequest) frameType() FrameType  { return FrameRegister }
func (*RegisterResponse) frameType() FrameType { return FrameRegistered }
func (*Unregister) frameType() FrameType       { return FrameUnregister }
func (*Disconnect) frameType() FrameType       { return FrameDisconnect }
func (*RequestHeader) frameType() FrameType    { return FrameRequest }
func (*ResponseHeader) frameType() FrameType   { return FrameResponse }
func (*Trailers) frameType() FrameType         { return FrameTrailers }

func (m *RegisterRequest) appendTo(b []byte) []byte {
	b = appendString(b, 1, m.TunnelID)
	b = appendBytes(b, 2, m.Secret)
	b = appendUint(b, 3, uint64(m.ConnIndex))
	b = appendString(b, 4, m.ConnectorID)
	b = appendString(b, 5, m.Version)
	for _, f := range m.Features {
		b = appendStringAlways(b, 6, f)
	}
	b = appendUint(b, 7, uint64(m.Protocol))
	return b
}

func (m *RegisterRequest) decode(b []byte) error {
	*m = RegisterRequest{}
	return decodeFields(b, func(num protowire.Number, v field) error {
		var err error
		switch num {
		case 1:
			m.TunnelID, err = v.str()
		case 2:
			m.Secret, err = v.bytes()
			m.Secret = append([]byte(nil), m.Secret...)
		case 3:
			var u uint64
			u, err = v.uint()
			m.ConnIndex = uint32(u)
		case 4:
			m.ConnectorID, err = v.str()
		case 5:
			m.Version, err = v.str()
		case 6:
			var s string
			s, err = v.str()
			m.Features = append(m.Features, s)
		case 7:
			var u uint64
			u, err = v.uint()
			m.Protocol = uint32(u)
		}
		return err
	})
}

func (m *RegisterResponse) appendTo(b []byte) []byte {
	b = appendString(b, 1, m.ConnectionID)
	b = appendString(b, 2, m.EdgeNode)
	b = appendString(b, 3, m.Error)
	b = appendBool(b, 4, m.Permanent)
	b = appendUint(b, 5, uint64(m.RetryAfterMS))
	b = appendUint(b, 6, uint64(m.HeartbeatMS))
	return b
}

func (m *RegisterResponse) decode(b []byte) error {
	*m = RegisterResponse{}
	return decodeFields(b, func(num protowire.Number, v field) error {
		var err error
		switch num {
		case 1:
			m.ConnectionID, err = v.str()
		case 2:
			m.EdgeNode, err = v.str()
		case 3:
			m.Error, err = v.str()
		case 4:
			m.Permanent, err = v.bool()
		case 5:
			var u uint64
			u, err = v.uint()
			m.RetryAfterMS = uint32(u) // as protobuf reads a uint32: truncated (the schema test holds it)
		case 6:
			var u uint64
			u, err = v.uint()
			m.HeartbeatMS = uint32(u) // truncated, as RetryAfterMS
		}
		return err
	})
}

func (m *Unregister) appendTo(b []byte) []byte { return appendString(b, 1, m.Reason) }

func (m *Unregister) decode(b []byte) error {
	*m = Unregister{}
	return decodeFields(b, func(num protowire.Number, v field) error {
		var err error
		if num == 1 {
			m.Reason, err = v.str()
		}
		return err
	})
}

func (m *Disconnect) appendTo(b []byte) []byte {
	b = appendString(b, 1, m.Reason)
	return appendBool(b, 2, m.Permanent)
}

func (m *Disconnect) decode(b []byte) error {
	*m = Disconnect{}
	return decodeFields(b, func(num protowire.Number, v field) error {
		var err error
		switch num {
		case 1:
			m.Reason, err = v.str()
		case 2:
			m.Permanent, err = v.bool()
		}
		return err
	})
}

func (m *RequestHeader) appendTo(b []byte) []byte {
	b = appendUint(b, 1, uint64(m.Type))
	b = appendString(b, 2, m.Method)
	b = appendString(b, 3, m.Host)
	b = appendString(b, 4, m.Path)
	b = appendHeader(b, 5, m.Header)
	b = appendString(b, 6, m.ClientAddr)
	b = appendString(b, 7, m.RequestID)
	b = appendSint(b, 8, m.ContentLength)
	for _, t := range m.Trailer {
		b = appendStringAlways(b, 9, t)
	}
	return b
}

func (m *RequestHeader) decode(b []byte) error {
	*m = RequestHeader{}
	hd := newHeaderDecoder(b, 5)
	err := decodeFields(b, func(num protowire.Number, v field) error {
		var err error
		switch num {
		case 1:
			var u uint64
			u, err = v.uint()
			m.Type = StreamType(u)
		case 2:
			m.Method, err = v.str()
		case 3:
			m.Host, err = v.str()
		case 4:
			m.Path, err = v.str()
		case 5:
			err = hd.add(v)
		case 6:
			m.ClientAddr, err = v.str()
		case 7:
			m.RequestID, err = v.str()
		case 8:
			m.ContentLength, err = v.sint()
		case 9:
			var s string
			s, err = v.str()
			m.Trailer = append(m.Trailer, s)
		}
		return err
	})
	m.Header = hd.h
	return err
}

func (m *ResponseHeader) appendTo(b []byte) []byte {
	b = appendUint(b, 1, uint64(m.Status))
	b = appendHeader(b, 2, m.Header)
	b = appendString(b, 3, m.Error)
	for _, t := range m.Trailer {
		b = appendStringAlways(b, 4, t)
	}
	b = appendSint(b, 5, m.ContentLength)
	return b
}

func (m *ResponseHeader) decode(b []byte) error {
	*m = ResponseHeader{}
	hd := newHeaderDecoder(b, 2)
	err := decodeFields(b, func(num protowire.Number, v field) error {
		var err error
		switch num {
		case 1:
			var u uint64
			u, err = v.uint()
			if err == nil && u > 999 {
				err = fmt.Errorf("status %d out of range", u)
			}
			m.Status = int(u)
		case 2:
			err = hd.add(v)
		case 3:
			m.Error, err = v.str()
		case 4:
			var s string
			s, err = v.str()
			m.Trailer = append(m.Trailer, s)
		case 5:
			m.ContentLength, err = v.sint()
		}
		return err
	})
	m.Header = hd.h
	return err
}

func (m *Trailers) appendTo(b []byte) []byte { return appendHeader(b, 1, m.Header) }

func (m *Trailers) decode(b []byte) error {
	*m = Trailers{}
	hd := newHeaderDecoder(b, 1)
	err := decodeFields(b, func(num protowire.Number, v field) error {
		if num == 1 {
			return hd.add(v)
		}
		return nil
	})
	m.Header = hd.h
	return err
}

// Encoding helpers. Zero values are omitted, as in proto3.

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return appendStringAlways(b, num, s)
}

func appendStringAlways(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, p []byte) []byte {
	if len(p) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, p)
}

func appendUint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendSint(b []byte, num protowire.Number, v int64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, protowire.EncodeZigZag(v))
}

func appendBool(b []byte, num protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	return appendUint(b, num, 1)
}

// appendHeader writes each (name, value) pair as an embedded message
// {1: name, 2: value}, names in byte order (values of a name in theirs), so
// that a header always encodes to the same bytes.
func appendHeader(b []byte, num protowire.Number, h http.Header) []byte {
	if len(h) == 0 {
		return b
	}
	var buf [32]string
	names := buf[:0]
	for name := range h {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, v := range h[name] {
			size := protowire.SizeTag(1) + protowire.SizeBytes(len(name)) +
				protowire.SizeTag(2) + protowire.SizeBytes(len(v))
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(size))
			b = appendStringAlways(b, 1, name)
			b = appendStringAlways(b, 2, v)
		}
	}
	return b
}

// field is one decoded field value: a varint or a length-delimited payload,
// as bytes and as a string. The string is cut from one copy of the whole
// message (decodeFields), so the strings of a message cost one allocation
// together; the bytes are the caller's and valid only while it decodes.
type field struct {
	typ protowire.Type
	u   uint64
	b   []byte
	s   string
}

var errWireType = errors.New("wrong wire type")

func (f field) str() (string, error) {
	if f.typ != protowire.BytesType {
		return "", errWireType
	}
	return f.s, nil
}

// bytes returns the payload, which is valid only during the decode: a
// message that keeps it copies it.
func (f field) bytes() ([]byte, error) {
	if f.typ != protowire.BytesType {
		return nil, errWireType
	}
	return f.b, nil
}

func (f field) uint() (uint64, error) {
	if f.typ != protowire.VarintType {
		return 0, errWireType
	}
	return f.u, nil
}

func (f field) sint() (int64, error) {
	u, err := f.uint()
	return protowire.DecodeZigZag(u), err
}

func (f field) bool() (bool, error) {
	u, err := f.uint()
	return u != 0, err
}

// headerDecoder fills the header of one message from its {1: name,
// 2: value} fields. The map is sized for the fields counted up front, and
// the values of single-valued names share one array (as net/textproto
// does), so a header costs two allocations, not two per field.
type headerDecoder struct {
	h    http.Header // nil while the message has no field
	vals []string
}

// newHeaderDecoder counts msg's fields numbered num.
func newHeaderDecoder(msg []byte, num protowire.Number) headerDecoder {
	n := 0
	for len(msg) > 0 {
		fnum, typ, k := protowire.ConsumeTag(msg)
		if k < 0 {
			break
		}
		msg = msg[k:]
		k = protowire.ConsumeFieldValue(fnum, typ, msg)
		if k < 0 {
			break
		}
		msg = msg[k:]
		if fnum == num && typ == protowire.BytesType {
			n++
		}
	}
	if n == 0 {
		return headerDecoder{}
	}
	return headerDecoder{h: make(http.Header, n), vals: make([]string, 0, n)}
}

// add decodes one {1: name, 2: value} pair into d.h.
func (d *headerDecoder) add(f field) error {
	if f.typ != protowire.BytesType {
		return errWireType
	}
	var name, value string
	b, s := f.b, f.s
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b, s = b[n:], s[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b, s = b[n:], s[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		vs := s[n-len(v) : n]
		b, s = b[n:], s[n:]
		switch num {
		case 1:
			name = vs
		case 2:
			value = vs
		}
	}
	if name == "" {
		return errors.New("header field without a name")
	}
	if d.h == nil {
		d.h = make(http.Header)
	}
	// Names are canonicalized, as net/http does with what it reads: a
	// peer's "content-length" and "Content-Length" are one field, which
	// the edge's proxy then handles once. A name already canonical is not
	// allocated again.
	key := http.CanonicalHeaderKey(name)
	if vv, ok := d.h[key]; ok || len(d.vals) == cap(d.vals) {
		d.h[key] = append(vv, value)
		return nil
	}
	d.vals = append(d.vals, value)
	d.h[key] = d.vals[len(d.vals)-1 : len(d.vals) : len(d.vals)]
	return nil
}

// decodeFields walks a protobuf-encoded message, calling fn for each varint or
// length-delimited field and skipping other wire types.
func decodeFields(b []byte, fn func(protowire.Number, field) error) error {
	s := string(b) // the strings of all fields, in one allocation
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("tunnel: bad message: %w", protowire.ParseError(n))
		}
		b, s = b[n:], s[n:]
		var f field
		f.typ = typ
		switch typ {
		case protowire.VarintType:
			f.u, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				f.s = s[n-len(f.b) : n]
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("tunnel: bad message: field %d: %w", num, protowire.ParseError(n))
			}
			b, s = b[n:], s[n:]
			continue
		}
		if n < 0 {
			return fmt.Errorf("tunnel: bad message: field %d: %w", num, protowire.ParseError(n))
		}
		b, s = b[n:], s[n:]
		if err := fn(num, f); err != nil {
			return fmt.Errorf("tunnel: bad message: field %d: %w", num, err)
		}
	}
	return nil
}

// IsUpgrade reports whether h asks for a protocol switch (an Upgrade field
// and the "upgrade" token in Connection): such a request travels as a
// StreamWebSocket stream, whatever protocol it switches to.
func IsUpgrade(h http.Header) bool {
	return h.Get("Upgrade") != "" && httpguts.HeaderValuesContainsToken(h["Connection"], "upgrade")
}
