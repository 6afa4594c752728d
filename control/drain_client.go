package control

import (
	"context"
	"net/http"
	"net/url"
)

// DrainEdge implements API.
func (c *Client) DrainEdge(ctx context.Context, name string) (EdgeNode, error) {
	var e EdgeNode
	err := c.do(ctx, http.MethodPost, "/v1/edges/"+url.PathEscape(name)+"/drain", nil, nil, &e)
	return e, err
}
