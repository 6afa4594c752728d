package tunnel

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// FrameType says what a frame's payload is.
type FrameType uint8

// Frame types. Values are fixed by the protocol; never reuse a number.
const (
	FrameRegister   FrameType = 0x01 // RegisterRequest, connector → edge, first frame on the control stream
	FrameRegistered FrameType = 0x02 // RegisterResponse, edge → connector
	FrameUnregister FrameType = 0x03 // Unregister, connector → edge
	FrameDisconnect FrameType = 0x04 // Disconnect, edge → connector

	FrameConfig       FrameType = 0x05 // ConfigUpdate, edge → connector, control stream (version 2)
	FrameConfigResult FrameType = 0x06 // ConfigResult, connector → edge, control stream (version 2)
	FrameEdges        FrameType = 0x07 // EdgeList, edge → connector, control stream (version 3)
	FrameGoAway       FrameType = 0x08 // GoAway, edge → connector, control stream (version 3)
	FrameHeartbeat    FrameType = 0x09 // Heartbeat, connector → edge, control stream (version 5)

	FrameRequest  FrameType = 0x10 // RequestHeader, edge → connector, first frame of a request stream
	FrameResponse FrameType = 0x11 // ResponseHeader, connector → edge

	FrameData     FrameType = 0x20 // raw body bytes
	FrameTrailers FrameType = 0x21 // Headers: the body's trailers; ends the body
	FrameEnd      FrameType = 0x22 // empty: ends the body without trailers

	FramePeerForward FrameType = 0x30 // PeerForward, entry edge → holding edge, first frame of a peer link stream (peer.go)
	FramePeerReply   FrameType = 0x31 // PeerReply, holding edge → entry edge, first frame it sends on it
)

func (t FrameType) String() string {
	switch t {
	case FrameRegister:
		return "register"
	case FrameRegistered:
		return "registered"
	case FrameUnregister:
		return "unregister"
	case FrameDisconnect:
		return "disconnect"
	case FrameConfig:
		return "config"
	case FrameConfigResult:
		return "config_result"
	case FrameEdges:
		return "edges"
	case FrameGoAway:
		return "goaway"
	case FrameHeartbeat:
		return "heartbeat"
	case FrameRequest:
		return "request"
	case FrameResponse:
		return "response"
	case FrameData:
		return "data"
	case FrameTrailers:
		return "trailers"
	case FrameEnd:
		return "end"
	case FramePeerForward:
		return "peer_forward"
	case FramePeerReply:
		return "peer_reply"
	}
	return fmt.Sprintf("frame(0x%02x)", uint8(t))
}

// MaxFramePayload bounds a frame's payload. A peer that announces more is
// broken or hostile, and the stream is closed.
const MaxFramePayload = 1 << 20

// ErrFrameTooLarge is returned for a frame whose length exceeds MaxFramePayload.
var ErrFrameTooLarge = errors.New("tunnel: frame too large")

// ReadFrameHeader reads a frame's type and payload length. The caller reads
// exactly n payload bytes next.
func ReadFrameHeader(r *bufio.Reader) (FrameType, int, error) {
	b, err := r.ReadByte()
	if err != nil {
		return 0, 0, err
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, fmt.Errorf("tunnel: reading %s frame length: %w", FrameType(b), err)
	}
	if n > MaxFramePayload {
		return 0, 0, fmt.Errorf("%w: %s frame of %d bytes", ErrFrameTooLarge, FrameType(b), n)
	}
	return FrameType(b), int(n), nil
}

// ReadFrame reads one whole frame. The payload is freshly allocated.
func ReadFrame(r *bufio.Reader) (FrameType, []byte, error) {
	return ReadFrameLimit(r, MaxFramePayload)
}

// ReadFrameLimit reads one whole frame of at most max payload bytes: a
// longer one fails with ErrFrameTooLarge before its payload is read or
// allocated.
func ReadFrameLimit(r *bufio.Reader, max int) (FrameType, []byte, error) {
	t, n, err := ReadFrameHeader(r)
	if err != nil {
		return 0, nil, err
	}
	if n > max {
		return 0, nil, fmt.Errorf("%w: %s frame of %d bytes (at most %d here)", ErrFrameTooLarge, t, n, max)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, readPayloadErr(t, err)
	}
	return t, p, nil
}

// AppendFrameHeader appends a frame header for a payload of n bytes.
func AppendFrameHeader(b []byte, t FrameType, n int) []byte {
	b = append(b, byte(t))
	return binary.AppendUvarint(b, uint64(n))
}

// WriteFrame writes a frame in a single Write call.
func WriteFrame(w io.Writer, t FrameType, payload []byte) error {
	if len(payload) > MaxFramePayload {
		return fmt.Errorf("%w: %s frame of %d bytes", ErrFrameTooLarge, t, len(payload))
	}
	b := make([]byte, 0, len(payload)+binary.MaxVarintLen32+1)
	b = AppendFrameHeader(b, t, len(payload))
	b = append(b, payload...)
	_, err := w.Write(b)
	return err
}

// Message is a frame payload with a protocol-buffers encoding.
type Message interface {
	frameType() FrameType
	appendTo(b []byte) []byte
	decode(b []byte) error
}

// WriteMessage encodes m and writes it as one frame.
func WriteMessage(w io.Writer, m Message) error {
	b, err := AppendMessage(make([]byte, 0, 256), m)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// AppendMessage appends m as one frame to b, so that a caller can send
// several frames in a single write.
func AppendMessage(b []byte, m Message) ([]byte, error) {
	start := len(b)
	b = append(b, byte(m.frameType()), 0, 0, 0) // room for a 3-byte uvarint length
	b = m.appendTo(b)
	n := len(b) - start - 4
	if n > MaxFramePayload {
		return b[:start], fmt.Errorf("%w: %s frame of %d bytes", ErrFrameTooLarge, m.frameType(), n)
	}
	// Write the length in place and close the gap if it took fewer than
	// three bytes.
	var lb [binary.MaxVarintLen32]byte
	ln := binary.PutUvarint(lb[:], uint64(n))
	copy(b[start+1:], lb[:ln])
	if ln < 3 {
		copy(b[start+1+ln:], b[start+4:])
		b = b[:len(b)-(3-ln)]
	}
	return b, nil
}

// AppendData appends p as one data frame (len(p) <= MaxFramePayload).
func AppendData(b, p []byte) []byte {
	b = AppendFrameHeader(b, FrameData, len(p))
	return append(b, p...)
}

// AppendEnd appends the frame that ends a body without trailers.
func AppendEnd(b []byte) []byte { return append(b, byte(FrameEnd), 0) }

// DecodeMessage decodes a frame payload read with ReadFrame into m.
func DecodeMessage(payload []byte, m Message) error { return m.decode(payload) }

// ReadMessage reads the next frame, checks it is of m's type and decodes it
// into m.
func ReadMessage(r *bufio.Reader, m Message) error {
	return ReadMessageLimit(r, m, MaxFramePayload)
}

// ReadMessageLimit is ReadMessage for a frame of at most max payload bytes.
//
// A payload that fits r's buffer is decoded where it lies, not copied
// first: decoding copies what the message keeps.
func ReadMessageLimit(r *bufio.Reader, m Message, max int) error {
	t, n, err := ReadFrameHeader(r)
	if err != nil {
		return err
	}
	if n > max {
		return fmt.Errorf("%w: %s frame of %d bytes (at most %d here)", ErrFrameTooLarge, t, n, max)
	}
	if t != m.frameType() {
		return fmt.Errorf("tunnel: got %s frame, want %s", t, m.frameType())
	}
	if n > r.Size() {
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return readPayloadErr(t, err)
		}
		return m.decode(p)
	}
	p, err := r.Peek(n)
	if err != nil {
		return readPayloadErr(t, err)
	}
	err = m.decode(p)
	r.Discard(n)
	return err
}

func readPayloadErr(t FrameType, err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("tunnel: reading %s frame: %w", t, err)
}
