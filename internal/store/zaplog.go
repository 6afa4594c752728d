package store

import (
	"log/slog"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/adit-dev/adit/internal/zapslog"
)

// newZapLogger returns a zap logger for etcd's server and client that passes
// errors (and worse) to logger and drops everything else.
// While *closing is true (the store is shutting down), etcd's complaints
// about its own listeners closing are logged at debug level only.
func newZapLogger(logger *slog.Logger, closing *atomic.Bool) *zap.Logger {
	return zapslog.New(logger, zapslog.Options{
		Prefix: "etcd: ",
		Quiet:  func(msg string) bool { return closing != nil && closing.Load() || benign[msg] },
	})
}

// benign are etcd error messages that are not errors for adit: a fresh
// single-node cluster logs this one once at its first start.
var benign = map[string]bool{
	"failed to update storage version": true,
}
