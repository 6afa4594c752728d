package cli

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
)

func TestAddrInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), Program{}, []string{"--home", t.TempDir(), "access", "tcp", "--hostname", "h.example", "--url", ln.Addr().String()}, &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	checkOneLine(t, errOut.String(), "address already in use; another program listens there: choose another --url")

	other := errors.New("something else")
	if got := AddrInUse(other, "--x"); got != other {
		t.Errorf("AddrInUse(other error) = %v, want it unchanged", got)
	}
	if AddrInUse(nil, "--x") != nil {
		t.Error("AddrInUse(nil) != nil")
	}
}
