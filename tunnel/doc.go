// Package tunnel is the wire protocol shared by the adit edge and connector.
//
// A connector dials the edge and holds one multiplexed connection (QUIC, or
// later WebSocket+yamux) per HA slot. Both transports satisfy [Conn]: a
// connection of ordered, independent, bidirectional [Stream]s.
//
// # Streams
//
// The connector opens the first stream of every connection, the control
// stream, and sends a [RegisterRequest]. The edge answers with a
// [RegisterResponse]. The control stream stays open for the life of the
// connection and carries [Unregister] (connector → edge: send me no new
// requests), [Disconnect] (edge → connector: this connection ends, and why),
// and the tunnel's remote configuration: [ConfigUpdate] (edge → connector)
// answered by [ConfigResult].
//
// Every other stream is opened by the edge and carries exactly one public
// request: a [RequestHeader] frame, then (for HTTP) the request body as
// [FrameData] frames ended by [FrameEnd] or [FrameTrailers]; the connector
// answers with a [ResponseHeader] frame and the response body framed the same
// way. For WebSocket upgrades and TCP streams, once the 101/200 response header
// is sent, both directions are raw bytes until each side closes its write half.
//
// # Frames
//
// Every frame is
//
//	type    uint8   (FrameRegister, FrameRequest, FrameData, ...)
//	length  uvarint (payload bytes; at most MaxFramePayload)
//	payload [length]byte
//
// Message payloads use the protocol buffers wire encoding, so unknown fields
// are skipped and new fields can be added without breaking older peers. The
// schema is tunnel.proto (field numbers are also noted on each message's
// struct); the tests check the hand-written encoder against it, and every
// message against a golden frame (testdata/messages.golden). Data payloads are raw
// bytes. docs/protocol.md describes the same thing with examples.
package tunnel

// ALPN is the TLS application protocol both transports negotiate. The number
// is the major protocol version; incompatible changes get a new ALPN.
const ALPN = "adit/1"

// ProtocolVersion is the minor version carried in RegisterRequest, bumped for
// backwards-compatible additions.
//
// Changelog:
//   - 1 (2026-11-23): first version: register, unregister, disconnect,
//     HTTP/WebSocket/TCP streams with framed bodies and trailers.
//   - 2 (2026-12-02): remote configuration: the config (ConfigUpdate) and
//     config_result (ConfigResult) control frames, sent only to a connector
//     that announces FeatureRemoteConfig (see config.go).
//   - 3 (2026-12-02): a fleet of edges: the edges (EdgeList) and goaway
//     (GoAway) control frames, sent only to a connector that announces
//     FeatureFleet (see fleet.go).
//   - 4 (2026-12-02): admission control: RegisterResponse.RetryAfterMS, the
//     delay a busy edge asks of a connector it refuses for now (older
//     connectors skip the field and back off as before).
//   - 5 (2026-12-02): heartbeats: the heartbeat (Heartbeat) control frame,
//     connector → edge, and RegisterResponse.HeartbeatMS, the edge's
//     answer to a connector that announces FeatureHeartbeat (see
//     heartbeat.go); the edge then sends no keepalives on the connection.
const ProtocolVersion = 5
