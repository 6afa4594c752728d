package tunnel

import "google.golang.org/protobuf/encoding/protowire"

// Heartbeats (protocol version 5).
//
// Idle QUIC connections cost the edge a timer and a wake-up per keepalive,
// so with thousands of them the keepalives dominate its idle CPU. A
// connector that announces FeatureHeartbeat on a QUIC connection takes
// liveness over from the transport: an edge that knows the feature sends
// no keepalives of its own and answers with RegisterResponse.HeartbeatMS,
// the period it expects. The connector then sends a Heartbeat
// (FrameHeartbeat) on the control stream of one connection per edge (its
// sentinel) at that period, and lets its other connections to that edge
// keep alive only rarely (a QUIC PING every 10s or so). Both sides judge
// all of a connector's connections to an edge by its sentinel:
//
//   - The edge hears the connector on the sentinel. A connector whose
//     connections to it all go quiet for two periods and a margin is
//     routed around (every one of its connections at once), and its
//     connections are closed a few periods later.
//   - The connector hears the edge's acknowledgements of the sentinel's
//     heartbeats. A Heartbeat is padded to HeartbeatPadding bytes so that
//     its packet is larger than a stateless reset (RFC 9000 §10.3): an
//     edge that crashed and came back answers it with one, and the
//     connector learns at once that all its connections to that edge are
//     gone. A sentinel that hears nothing for two periods has the
//     connector check all its connections to that edge at once.
//
// An edge that does not know the feature leaves HeartbeatMS zero and keeps
// sending its own keepalives every second; a connector then sends no
// Heartbeat to it. An edge that knows it still keeps a connector without
// it (an older one) on that connector's own keepalives, judged one
// connection at a time.

// FeatureHeartbeat is the RegisterRequest feature of a connector that
// sends Heartbeat frames when the edge asks for them.
const FeatureHeartbeat = "heartbeat"

// HeartbeatPadding is the padding a connector puts in a Heartbeat: with
// the frame, STREAM frame and packet headers and the AEAD tag, its QUIC
// packet is well over the 42 bytes below which an edge sends no stateless
// reset.
const HeartbeatPadding = 32

// Heartbeat says the connector is alive (FrameHeartbeat, connector → edge,
// control stream). The edge reads it and discards it.
type Heartbeat struct {
	Padding []byte // 1: any bytes; makes the packet large enough to draw a stateless reset
}

// NewHeartbeat is a Heartbeat with HeartbeatPadding bytes of padding.
func NewHeartbeat() *Heartbeat {
	return &Heartbeat{Padding: make([]byte, HeartbeatPadding)}
}

func (*Heartbeat) frameType() FrameType { return FrameHeartbeat }

func (m *Heartbeat) appendTo(b []byte) []byte { return appendBytes(b, 1, m.Padding) }

func (m *Heartbeat) decode(b []byte) error {
	*m = Heartbeat{}
	return decodeFields(b, func(num protowire.Number, v field) error {
		if num != 1 {
			return nil
		}
		p, err := v.bytes()
		m.Padding = append([]byte(nil), p...)
		return err
	})
}
