package control

import (
	"context"
	"net/http"
)

// ListEdges implements API.
func (c *Client) ListEdges(ctx context.Context) ([]EdgeNode, error) {
	var es []EdgeNode
	err := c.do(ctx, http.MethodGet, "/v1/edges", nil, nil, &es)
	return es, err
}
