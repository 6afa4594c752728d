package tunnel

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// Connectors on a fleet of edges (protocol version 3).
//
// A connector that can spread its connections over several edges says so
// with the FeatureFleet feature in its RegisterRequest. The edge then sends
// it, on the control stream:
//
//   - an EdgeList (FrameEdges) right after the RegisterResponse, when it
//     knows the fleet, and again whenever the fleet changes: every live
//     edge connectors may dial, with its region and whether it drains. The
//     list replaces the one sent before; the connector spreads its HA
//     connections over these edges (preferring its own region) and keeps
//     the edges of its credentials only as a fallback.
//   - a GoAway (FrameGoAway) when this edge starts to drain: the connector
//     opens a connection for the same HA slot to another edge and, once
//     that one is registered, unregisters this one (which the edge closes
//     when its last request is done). An edge that drains closes, with
//     code 4 (shutdown), every connection still open when it leaves.

// FeatureFleet is the RegisterRequest feature of a connector that reads
// EdgeList and GoAway frames.
const FeatureFleet = "fleet"

// MaxFleetEdges bounds an EdgeList; a longer one is invalid.
const MaxFleetEdges = 256

// EdgeList is every live edge of the fleet (FrameEdges, edge → connector).
type EdgeList struct {
	Edges []FleetEdge // 1: at most MaxFleetEdges
}

// FleetEdge is one edge of an EdgeList.
type FleetEdge struct {
	Name     string // 1: the edge's node name
	Addr     string // 2: host:port connectors dial (its tunnel address)
	Region   string // 3: its region label; empty if none
	Draining bool   // 4: it drains: open no new connection to it
}

// GoAway asks the connector to move this connection to another edge
// (FrameGoAway, edge → connector).
type GoAway struct {
	Reason string // 1
}

func (*EdgeList) frameType() FrameType { return FrameEdges }
func (*GoAway) frameType() FrameType   { return FrameGoAway }

func (m *EdgeList) appendTo(b []byte) []byte {
	for _, e := range m.Edges {
		var inner []byte
		inner = appendString(inner, 1, e.Name)
		inner = appendString(inner, 2, e.Addr)
		inner = appendString(inner, 3, e.Region)
		inner = appendBool(inner, 4, e.Draining)
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, inner)
	}
	return b
}

func (m *EdgeList) decode(b []byte) error {
	*m = EdgeList{}
	return decodeFields(b, func(num protowire.Number, v field) error {
		if num != 1 {
			return nil
		}
		p, err := v.bytes()
		if err != nil {
			return err
		}
		if len(m.Edges) == MaxFleetEdges {
			return fmt.Errorf("more than %d edges", MaxFleetEdges)
		}
		var e FleetEdge
		err = decodeFields(p, func(num protowire.Number, v field) error {
			var err error
			switch num {
			case 1:
				e.Name, err = v.str()
			case 2:
				e.Addr, err = v.str()
			case 3:
				e.Region, err = v.str()
			case 4:
				e.Draining, err = v.bool()
			}
			return err
		})
		m.Edges = append(m.Edges, e)
		return err
	})
}

func (m *GoAway) appendTo(b []byte) []byte { return appendString(b, 1, m.Reason) }

func (m *GoAway) decode(b []byte) error {
	*m = GoAway{}
	return decodeFields(b, func(num protowire.Number, v field) error {
		var err error
		if num == 1 {
			m.Reason, err = v.str()
		}
		return err
	})
}

// Validate reports the first edge of the list a connector should not dial:
// an address that is not host:port with a port from 1 to 65535, or a name,
// address or region longer than 255 bytes.
func (m *EdgeList) Validate() error {
	for i, e := range m.Edges {
		if len(e.Name) > 255 || len(e.Addr) > 255 || len(e.Region) > 255 {
			return fmt.Errorf("edges[%d]: a field longer than 255 bytes", i)
		}
		host, port, err := net.SplitHostPort(e.Addr)
		if err != nil || host == "" {
			return fmt.Errorf("edges[%d].addr: %q is not host:port", i, e.Addr)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("edges[%d].addr: %q: bad port", i, e.Addr)
		}
	}
	if len(m.Edges) > MaxFleetEdges {
		return errors.New("edges: too many")
	}
	return nil
}
