package edgecmd

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/adit-dev/adit/cli"
)

// TestAddrInUse: a listener whose address another program holds fails
// `adit edge` with one line naming the flag to change.
func TestAddrInUse(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	busyTCP, busyUDP := tcp.Addr().String(), udp.LocalAddr().String()
	for _, tc := range []struct {
		flag, addr string
	}{
		{"--http-addr", busyTCP},
		{"--api-addr", busyTCP},
		{"--tunnel-addr", busyUDP},
		{"--metrics", busyTCP},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			args := map[string]string{"--http-addr": "127.0.0.1:0", "--api-addr": "127.0.0.1:0", "--tunnel-addr": "127.0.0.1:0"}
			args[tc.flag] = tc.addr
			argv := []string{"--home", t.TempDir(), "edge", "--data-dir", t.TempDir()}
			for k, v := range args {
				argv = append(argv, k, v)
			}
			var out, errOut bytes.Buffer
			code := cli.Main(t.Context(), cli.Program{Commands: Commands()}, argv, &out, &errOut)
			want := "address already in use; another program listens there: choose another " + tc.flag + "\n"
			if code != 1 || !strings.HasSuffix(errOut.String(), want) || strings.Count(errOut.String(), "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want 1 and one line ending %q", code, errOut.String(), want)
			}
		})
	}
}
