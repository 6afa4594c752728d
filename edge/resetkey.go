package edge

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/adit-dev/adit/internal/pki"
)

// resetKeyFile holds the edge's QUIC stateless reset key (32 random
// bytes, mode 0600). It outlives restarts on purpose: after a crash, the
// restarted edge answers the first packet of each connection it lost with
// a stateless reset, so connectors reconnect at once instead of waiting
// for their idle timeout (see tunnelquic.Config.StatelessResetKey). Anyone
// holding it can reset this edge's connections: it is a secret.
const resetKeyFile = "quic-reset.key"

// loadResetKey reads the key from dir, creating it on first use.
func loadResetKey(dir string) (*[32]byte, error) {
	path := filepath.Join(dir, resetKeyFile)
	var key [32]byte
	b, err := os.ReadFile(path)
	switch {
	case err == nil && len(b) == len(key):
		copy(key[:], b)
		return &key, nil
	case err == nil:
		return nil, fmt.Errorf("edge: %s: %d bytes, want %d", path, len(b), len(key))
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("edge: %w", err)
	}
	rand.Read(key[:])
	if err := pki.WriteFileAtomic(path, key[:], 0o600); err != nil {
		return nil, fmt.Errorf("edge: writing %s: %w", path, err)
	}
	return &key, nil
}
