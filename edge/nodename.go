package edge

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/google/uuid"

	"github.com/adit-dev/adit/internal/pki"
)

// NodeNameFile is the file in the data directory that keeps the edge's node
// name across restarts.
const NodeNameFile = "node-name"

// maxNodeNameLen bounds a node name.
const maxNodeNameLen = 128

// nodeName returns the edge's node name: configured if set (the file is
// left alone), else the name kept in dataDir/node-name, else a new one
// (the host name and a short random suffix) written there, so the edge
// keeps its name, and the admin token it registered, across restarts.
func nodeName(dataDir, configured string) (string, error) {
	if configured != "" {
		if err := checkNodeName(configured); err != nil {
			return "", fmt.Errorf("edge: node name: %w", err)
		}
		return configured, nil
	}
	path := filepath.Join(dataDir, NodeNameFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		name := strings.TrimSpace(string(b))
		if err := checkNodeName(name); err != nil {
			return "", fmt.Errorf("edge: node name in %s: %w (fix or delete the file)", path, err)
		}
		return name, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("edge: node name: %w", err)
	}
	host, _ := os.Hostname()
	if checkNodeName(host) != nil {
		host = "edge"
	}
	name := host + "-" + uuid.NewString()[:6]
	if err := pki.WriteFileAtomic(path, []byte(name+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("edge: node name: %w", err)
	}
	return name, nil
}

// checkNodeName accepts 1-128 printable characters without spaces.
func checkNodeName(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	if len(name) > maxNodeNameLen {
		return fmt.Errorf("%d bytes, the limit is %d", len(name), maxNodeNameLen)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("%q has a space or an unprintable character", name)
		}
	}
	return nil
}
