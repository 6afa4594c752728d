package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTunnelRunNotifiesSystemd runs `adit tunnel run` as a Type=notify
// unit would (with $NOTIFY_SOCKET): READY=1 comes once the tunnel is
// connected, STOPPING=1 after SIGTERM.
func TestTunnelRunNotifiesSystemd(t *testing.T) {
	dir, err := os.MkdirTemp("", "sd") // a short path: unix socket names are bounded
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := startEdge(t, "")
	tun := createTunnel(t, srv, "notify", "notify.example.test")
	p := startAdit(t, []string{"ADIT_TUNNEL_TOKEN=" + tunnelToken(t, srv, tun), "NOTIFY_SOCKET=" + sock},
		"tunnel", "run", "--url", "http_status:204", "--ha-connections", "1")
	read := func() string {
		t.Helper()
		ln.SetReadDeadline(time.Now().Add(60 * time.Second))
		b := make([]byte, 1024)
		n, err := ln.Read(b)
		if err != nil {
			t.Fatalf("reading the notification: %v\n%s", err, p.out.String())
		}
		return string(b[:n])
	}
	if got := read(); !strings.HasPrefix(got, "READY=1\n") {
		t.Errorf("first notification %q, want READY=1", got)
	}
	resp, err := edgeGet(srv, "notify.example.test", "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Errorf("after READY=1: status %d, want 204 (the tunnel is up)", resp.StatusCode)
	}
	p.stop(t)
	if got := read(); !strings.HasPrefix(got, "STOPPING=1\n") {
		t.Errorf("notification after SIGTERM %q, want STOPPING=1", got)
	}
}
