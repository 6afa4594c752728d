package connector

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/adit-dev/adit/carrier"
)

// A SOCKS5 server (RFC 1928) on a TCP stream, for socks-proxy rules and
// rules with originRequest proxyType "socks": no authentication, CONNECT
// only, IPv4, IPv6 and domain-name destinations. Destinations are checked
// against the rule's ipRules after names are resolved, and the address
// checked is the address dialled.

const socksVersion = 5

// SOCKS5 authentication methods.
const (
	socksMethodNoAuth       = 0x00
	socksMethodNoAcceptable = 0xff
)

// SOCKS5 commands and address types.
const (
	socksCmdConnect = 0x01
	socksAtypIPv4   = 0x01
	socksAtypDomain = 0x03
	socksAtypIPv6   = 0x04
)

// SOCKS5 reply codes.
const (
	socksSucceeded           = 0x00
	socksGeneralFailure      = 0x01
	socksNotAllowed          = 0x02
	socksHostUnreachable     = 0x04
	socksConnectionRefused   = 0x05
	socksTTLExpired          = 0x06
	socksCommandNotSupported = 0x07
	socksAddrNotSupported    = 0x08
)

var errSOCKSAddrType = errors.New("socks: unsupported address type")

// socksRequest is a SOCKS5 request: VER CMD RSV ATYP DST.ADDR DST.PORT.
type socksRequest struct {
	Cmd  byte
	Atyp byte
	Host string // an IP literal for IPv4 and IPv6, else the domain name
	Port uint16
}

// dest is the request's destination as host:port.
func (q socksRequest) dest() string {
	return net.JoinHostPort(q.Host, strconv.Itoa(int(q.Port)))
}

// readSOCKSGreeting reads VER NMETHODS METHODS and returns the methods.
func readSOCKSGreeting(r io.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("socks: greeting: %w", err)
	}
	if hdr[0] != socksVersion {
		return nil, fmt.Errorf("socks: version %d, want 5", hdr[0])
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(r, methods); err != nil {
		return nil, fmt.Errorf("socks: greeting: %w", err)
	}
	return methods, nil
}

// readSOCKSRequest reads one request. An unknown address type is
// errSOCKSAddrType (the caller answers it); a domain name must be 1-255
// bytes without NUL.
func readSOCKSRequest(r io.Reader) (socksRequest, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return socksRequest{}, fmt.Errorf("socks: request: %w", err)
	}
	if hdr[0] != socksVersion {
		return socksRequest{}, fmt.Errorf("socks: request version %d, want 5", hdr[0])
	}
	q := socksRequest{Cmd: hdr[1], Atyp: hdr[3]}
	switch q.Atyp {
	case socksAtypIPv4, socksAtypIPv6:
		n := 4
		if q.Atyp == socksAtypIPv6 {
			n = 16
		}
		ip := make([]byte, n)
		if _, err := io.ReadFull(r, ip); err != nil {
			return socksRequest{}, fmt.Errorf("socks: request: %w", err)
		}
		a, _ := netip.AddrFromSlice(ip)
		q.Host = a.String()
	case socksAtypDomain:
		var n [1]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return socksRequest{}, fmt.Errorf("socks: request: %w", err)
		}
		name := make([]byte, n[0])
		if _, err := io.ReadFull(r, name); err != nil {
			return socksRequest{}, fmt.Errorf("socks: request: %w", err)
		}
		if len(name) == 0 || containsByte(name, 0) {
			return socksRequest{}, errors.New("socks: request: bad domain name")
		}
		q.Host = string(name)
	default:
		return socksRequest{}, errSOCKSAddrType
	}
	var port [2]byte
	if _, err := io.ReadFull(r, port[:]); err != nil {
		return socksRequest{}, fmt.Errorf("socks: request: %w", err)
	}
	q.Port = binary.BigEndian.Uint16(port[:])
	return q, nil
}

func containsByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}

// socksReply encodes a reply with the bound address (zero if nil).
func socksReply(code byte, bound net.Addr) []byte {
	addr := netip.IPv4Unspecified()
	var port uint16
	if ta, ok := bound.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		addr, port = ap.Addr().Unmap(), ap.Port()
	}
	b := []byte{socksVersion, code, 0}
	if addr.Is4() {
		b = append(b, socksAtypIPv4)
	} else {
		b = append(b, socksAtypIPv6)
	}
	b = append(b, addr.AsSlice()...)
	return binary.BigEndian.AppendUint16(b, port)
}

// socksReplyCode maps a dial error to a SOCKS5 reply code.
func socksReplyCode(err error) byte {
	var denied *deniedError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &denied):
		return socksNotAllowed
	case errors.Is(err, syscall.ECONNREFUSED):
		return socksConnectionRefused
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return socksTTLExpired
	case errors.As(err, &dnsErr), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return socksHostUnreachable
	}
	return socksGeneralFailure
}

// serveSOCKS runs one SOCKS5 exchange on stream and then pipes it to the
// destination.
func serveSOCKS(stream *streamConn, d *tcpDialer, log *slog.Logger) {
	fail := func(reply []byte, msg string, err error) {
		log.Info("socks request refused: "+msg, "err", err)
		if reply != nil {
			stream.Write(reply)
		}
		stream.CloseWrite()
	}
	methods, err := readSOCKSGreeting(stream)
	if err != nil {
		fail(nil, "bad greeting", err)
		return
	}
	if !containsByte(methods, socksMethodNoAuth) {
		fail([]byte{socksVersion, socksMethodNoAcceptable}, "the client wants authentication; only no-auth is served", nil)
		return
	}
	if _, err := stream.Write([]byte{socksVersion, socksMethodNoAuth}); err != nil {
		return
	}
	q, err := readSOCKSRequest(stream)
	switch {
	case errors.Is(err, errSOCKSAddrType):
		fail(socksReply(socksAddrNotSupported, nil), "unsupported address type", err)
		return
	case err != nil:
		fail(nil, "bad request", err)
		return
	case q.Cmd != socksCmdConnect:
		fail(socksReply(socksCommandNotSupported, nil), fmt.Sprintf("command %d; only CONNECT is served", q.Cmd), nil)
		return
	}
	dest := q.dest()
	log = log.With("destination", dest)
	timeout := d.nd.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	origin, err := d.dial(ctx, dest, true)
	cancel()
	if err != nil {
		fail(socksReply(socksReplyCode(err), nil), "cannot connect", err)
		return
	}
	if _, err := stream.Write(socksReply(socksSucceeded, origin.LocalAddr())); err != nil {
		origin.Close()
		return
	}
	log.Debug("socks connection open")
	if err := carrier.Pipe(stream, origin); err != nil {
		log.Debug("socks connection broke off", "err", err)
	}
}
