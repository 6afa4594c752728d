package shield

import (
	"context"
	"fmt"
	"log/slog"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/internal/store"
)

// watchPrefix is store.WatchPrefix, its load error naming the shield.
func watchPrefix(ctx context.Context, cli *clientv3.Client, prefix string, log *slog.Logger, apply func(map[string][]byte)) (<-chan struct{}, error) {
	done, err := store.WatchPrefix(ctx, cli, prefix, log, apply)
	if err != nil {
		return nil, fmt.Errorf("shield: %w", err)
	}
	return done, nil
}

// contextFrom returns a context that ends with parent or when cancel is
// called (a layer's Close).
func contextFrom(parent context.Context) (context.Context, context.CancelFunc) {
	if parent == nil {
		parent = context.Background()
	}
	return context.WithCancel(parent)
}
