package connector

import (
	"log/slog"
	"time"

	"github.com/adit-dev/adit/tunnel"
)

// fleetFrame takes an edges or goaway frame from the edge at addr
// (protocol version 3; edges.go says what the connector does with them).
// A frame that does not decode or validate is logged and ignored: the
// connector keeps the edges it knows.
func (c *Connector) fleetFrame(t tunnel.FrameType, p []byte, addr string, log *slog.Logger) {
	switch t {
	case tunnel.FrameEdges:
		var m tunnel.EdgeList
		err := tunnel.DecodeMessage(p, &m)
		if err == nil {
			err = m.Validate()
		}
		if err != nil {
			c.rl.Logger(log).Warn("bad edges frame from the edge; keeping the edges known", "err", err)
			return
		}
		if len(m.Edges) == 0 {
			return // an edge that does not know its fleet yet
		}
		if c.edges.update(m.Edges) {
			log.Info("the fleet's edges", "edges", c.edges.summary())
		}
	case tunnel.FrameGoAway:
		var m tunnel.GoAway
		if err := tunnel.DecodeMessage(p, &m); err != nil {
			c.rl.Logger(log).Warn("bad goaway frame from the edge", "err", err)
		}
		log.Info("the edge asks this connector to move; moving to another edge", "reason", m.Reason)
		c.edges.setDraining(addr, time.Time{})
	}
}
