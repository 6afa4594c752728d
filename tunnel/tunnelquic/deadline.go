package tunnelquic

import "time"

// SetReadDeadline and SetWriteDeadline bound the stream's blocked reads and
// writes, as a net.Conn's do: once passed they fail with a timeout error
// (connector.Listen's TCP connections offer them).
func (s *stream) SetReadDeadline(t time.Time) error  { return s.s.SetReadDeadline(t) }
func (s *stream) SetWriteDeadline(t time.Time) error { return s.s.SetWriteDeadline(t) }
