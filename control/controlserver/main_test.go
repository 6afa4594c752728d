package controlserver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/poll"
	"github.com/adit-dev/adit/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newEtcd starts an embedded etcd for one test and returns its client.
func newEtcd(t testing.TB) *clientv3.Client {
	t.Helper()
	s, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("store.Close: %v", err)
		}
	})
	return s.Client()
}

func newService(t testing.TB) (*Service, *clientv3.Client) {
	cli := newEtcd(t)
	return NewService(cli, control.EdgeInfo{Node: "edge-1", TunnelAddrs: []string{"127.0.0.1:7844"}, CAPEM: "-----CA-----"}, nil), cli
}

// secret returns a valid tunnel secret.
func secret(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// waitFor polls cond until it holds.
var waitFor = poll.Until

// wantErr fails unless err wraps want (nil for success).
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("%s: got error %v, want success", what, err)
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s: got error %v, want %v", what, err, want)
	}
}

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}
