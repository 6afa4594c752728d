package tunnel

import "google.golang.org/protobuf/encoding/protowire"

// The peer link (edge ↔ edge). Edges of one fleet forward a request that
// reaches an edge without a connection for its tunnel to an edge that has
// one, over a connection of the QUIC transport authenticated both ways by
// the fleet's CA (a peer certificate, package internal/pki). Every stream
// on it carries one forwarded request, opened by the entry edge (the one
// the visitor reached):
//
//	entry → holding:  PeerForward, then the request stream exactly as an
//	                  edge sends it to a connector (RequestHeader, body...)
//	holding → entry:  PeerReply, then the connector's answer exactly as the
//	                  connector sends it (ResponseHeader, body...)
//
// The holding edge answers PeerReply with an empty Error once the request
// is on a stream to one of its connectors, and relays the bytes both ways
// unchanged from then on; otherwise it sets Error and ends the stream. A
// stream that arrived over a peer link is never forwarded again: one hop
// at most, so no loop.

// MaxPeerForward bounds a PeerForward payload; a larger one is a protocol
// error.
const MaxPeerForward = 4 << 10

// PeerForward opens a stream on a peer link (FramePeerForward).
type PeerForward struct {
	TunnelID  string // 1: the tunnel the request goes down (a UUID)
	EntryNode string // 2: the edge the visitor reached, for the holding edge's logs
}

// PeerReply answers a PeerForward (FramePeerReply).
type PeerReply struct {
	Error string // 1: empty: the request went down a connection; else why not
}

func (*PeerForward) frameType() FrameType { return FramePeerForward }
func (*PeerReply) frameType() FrameType   { return FramePeerReply }

func (m *PeerForward) appendTo(b []byte) []byte {
	b = appendString(b, 1, m.TunnelID)
	return appendString(b, 2, m.EntryNode)
}

func (m *PeerForward) decode(b []byte) error {
	*m = PeerForward{}
	return decodeFields(b, func(num protowire.Number, v field) error {
		var err error
		switch num {
		case 1:
			m.TunnelID, err = v.str()
		case 2:
			m.EntryNode, err = v.str()
		}
		return err
	})
}

func (m *PeerReply) appendTo(b []byte) []byte { return appendString(b, 1, m.Error) }

func (m *PeerReply) decode(b []byte) error {
	*m = PeerReply{}
	return decodeFields(b, func(num protowire.Number, v field) error {
		var err error
		if num == 1 {
			m.Error, err = v.str()
		}
		return err
	})
}
