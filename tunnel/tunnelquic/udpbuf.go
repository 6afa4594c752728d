package tunnelquic

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
)

// udpBufferSize is the socket buffer size asked for, in each direction:
// what quic-go wants for a fast transfer (about 7 MB). Linux allows an
// unprivileged process only net.core.rmem_max / wmem_max (often 208 KiB).
const udpBufferSize = 7 << 20

// listenUDP opens the UDP socket for a listener or a dialer and grows its
// buffers. When the kernel caps them it logs one warning with the fix,
// instead of quic-go's generic line on stderr.
func listenUDP(addr *net.UDPAddr, log *slog.Logger) (*net.UDPConn, error) {
	pc, err := net.ListenUDP("udp", addr)
	if err != nil {
		return nil, err
	}
	rcv, snd, err := growBuffers(pc)
	if err != nil {
		log.Debug("reading UDP buffer sizes", "err", err)
		return pc, nil
	}
	if msg := bufferWarning(rcv, snd, udpBufferSize); msg != "" {
		warnOnce.Do(func() {
			log.Warn(msg, "receive_kib", rcv>>10, "send_kib", snd>>10, "wanted_kib", udpBufferSize>>10)
			// We said it with the fix; quic-go would say it again without.
			os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
		})
	}
	return pc, nil
}

var warnOnce sync.Once

// growBuffers asks for udpBufferSize in both directions, forcing it past
// the sysctl limits when the process may (CAP_NET_ADMIN), and returns the
// sizes the kernel granted (it reports twice the usable size; halved here).
func growBuffers(pc *net.UDPConn) (rcv, snd int, err error) {
	raw, err := pc.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		for _, o := range []struct {
			set, force int
			got        *int
		}{
			{syscall.SO_RCVBUF, syscall.SO_RCVBUFFORCE, &rcv},
			{syscall.SO_SNDBUF, syscall.SO_SNDBUFFORCE, &snd},
		} {
			cur, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, o.set)
			if err == nil && cur/2 >= udpBufferSize {
				*o.got = cur / 2
				continue
			}
			if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, o.force, udpBufferSize) != nil {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, o.set, udpBufferSize)
			}
			cur, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, o.set)
			if err != nil {
				serr = err
				return
			}
			*o.got = cur / 2
		}
	})
	if err == nil {
		err = serr
	}
	return rcv, snd, err
}

// bufferWarning says what to do when the granted buffer sizes are below
// want, or returns "" when they are not.
func bufferWarning(rcv, snd, want int) string {
	if rcv >= want && snd >= want {
		return ""
	}
	return fmt.Sprintf("the kernel limits UDP socket buffers below the %d KiB QUIC needs for fast transfers "+
		"(large uploads and downloads will be slower); raise the limit as root with "+
		"`sysctl -w net.core.rmem_max=%d net.core.wmem_max=%d` and keep it in /etc/sysctl.d/, "+
		"or use --protocol websocket", want>>10, want, want)
}
