// Package carrier carries TCP connections to a tunnel's origin through an
// adit edge, over a WebSocket: the client side of `adit access`.
//
// [Dial] opens one connection: an HTTP/1.1 WebSocket upgrade to the edge
// (Host: the routed hostname, even when the edge URL names an IP), offering
// the subprotocol [Subprotocol]. The edge opens a TCP stream to the tunnel
// routed for that hostname; its connector matches an ingress rule of a TCP
// kind (tcp, ssh, rdp, smb, bastion) and dials the origin. If the origin is
// up the edge accepts the WebSocket; otherwise it answers with its error page
// (502 tunnel offline, 502 origin unreachable with a request ID, 404 unknown
// hostname), which Dial returns as an error. [ServeListener] does the same for
// every connection a local listener accepts.
//
// # The adit-access-tcp subprotocol
//
// Both directions are sequences of binary messages. A message with a payload
// carries those bytes of the TCP stream, in order; message boundaries mean
// nothing. An empty binary message ends its direction, like a TCP FIN: the
// sender will send no more bytes, and the receiver reads end of file (this
// is how a half-close passes through; plain WebSocket cannot express one).
// Once a side has both sent and received its end, it closes the WebSocket
// with status 1000 (normal). Closing with another status, or dropping the
// connection, aborts the stream: the other side sees an error, not an end.
// A close with status 1000 or 1001 before an empty message is read as the
// end of the peer's direction. Text messages are a protocol error.
//
// A bastion destination is sent in the [DestinationHeader] request header
// (cloudflared's [JumpDestinationHeader] is accepted too).
package carrier
