package tunnel

import (
	"context"
	"fmt"
	"io"
	"net"
)

// Stream is one bidirectional, ordered byte stream within a Conn.
type Stream interface {
	io.Reader
	io.Writer
	// CloseWrite finishes the sending direction: the peer reads io.EOF once
	// it has read everything written before.
	CloseWrite() error
	// Close releases the stream. Whatever is unfinished is abandoned: if the
	// write side was not closed, the peer sees an error rather than a clean
	// end, and no more data is read.
	Close() error
	// Context is done once the stream is of no more use to this side's
	// writer: the peer abandoned it (reset it, or stopped reading it),
	// this side closed it (Close), or the connection ended. CloseWrite
	// does not end it; once it was called, a peer that stops reading may
	// go unreported (there is nothing left to send it anyway).
	// context.Cause says why. The connector cancels the origin's request
	// when it ends: the edge gave up on the request.
	Context() context.Context
}

// Conn is one multiplexed tunnel connection between a connector and an edge.
type Conn interface {
	// OpenStream opens a new stream, waiting while the peer's limit on
	// concurrent streams is reached.
	OpenStream(ctx context.Context) (Stream, error)
	// AcceptStream waits for the peer to open a stream.
	AcceptStream(ctx context.Context) (Stream, error)
	// Close ends the connection with a code and a reason the peer sees.
	Close(code ErrorCode, reason string) error
	// Done is closed when the connection has ended, for any reason.
	Done() <-chan struct{}
	// Err says why the connection ended once Done is closed.
	Err() error
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
	// Protocol names the transport: "quic" or "websocket".
	Protocol() string
	// PacketsReceived counts what the transport has received from the
	// peer (QUIC packets, pieces of WebSocket messages). Only its changes
	// mean something: with the transport's keepalives it moves at least
	// once per keepalive period while the peer is alive, so a count that
	// stands still for several periods means the peer is gone or stopped
	// (the edge's health check, the connector's reset check).
	PacketsReceived() uint64
}

// Listener accepts tunnel connections on the edge.
type Listener interface {
	Accept(ctx context.Context) (Conn, error)
	Addr() net.Addr
	Close() error
}

// ErrorCode is sent when a connection is closed.
type ErrorCode uint64

// Connection error codes.
const (
	CodeNormal        ErrorCode = 0 // orderly close
	CodeProtocol      ErrorCode = 1 // the peer broke the protocol
	CodeUnauthorized  ErrorCode = 2 // registration refused
	CodeTunnelDeleted ErrorCode = 3 // the tunnel was deleted
	CodeShutdown      ErrorCode = 4 // the edge or connector is shutting down
	CodeRemoved       ErrorCode = 5 // an operator removed the connection (cleanup)
)

// CloseError is the error of a connection the peer (or this side) closed
// with a code and reason.
type CloseError struct {
	Code   ErrorCode
	Reason string
	Remote bool
}

func (e *CloseError) Error() string {
	who := "local"
	if e.Remote {
		who = "peer"
	}
	return fmt.Sprintf("tunnel: connection closed by %s (code %d): %s", who, e.Code, e.Reason)
}
