package tunnelws

import "time"

// SetReadDeadline and SetWriteDeadline bound the stream's blocked reads and
// writes, as a net.Conn's do: once passed they fail with a timeout error
// (connector.Listen's TCP connections offer them). Close overrides them.
func (s *stream) SetReadDeadline(t time.Time) error {
	if s.closed.Load() {
		return errStreamClosed
	}
	return s.ys.SetReadDeadline(t)
}

func (s *stream) SetWriteDeadline(t time.Time) error {
	if s.closed.Load() {
		return errStreamClosed
	}
	return s.ys.SetWriteDeadline(t)
}
