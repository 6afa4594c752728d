package control

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// The per-hostname traffic an edge counted over the last hour: GET
// /v1/traffic and GET /v1/traffic/{hostname} (docs/openapi.yaml), what
// the dashboard graphs. Each edge counts the public requests it answered
// itself, per route hostname ("app.example.com", or "*.example.com" for
// every name a wildcard route serves), in memory: a restarted edge starts
// from nothing.

// TrafficSummary is GET /v1/traffic: every hostname with requests in the
// last hour, busiest first.
type TrafficSummary struct {
	EdgeNode string            `json:"edge_node"`
	Minutes  int               `json:"minutes"` // the span counted: 60
	Hosts    []HostTrafficSums `json:"hosts"`
}

// HostTrafficSums is one hostname's totals over the last hour.
type HostTrafficSums struct {
	Hostname string `json:"hostname"`
	Requests uint64 `json:"requests"`
	Errors   uint64 `json:"errors"`    // answered with a status of 400 or more
	BytesIn  uint64 `json:"bytes_in"`  // request bodies read from clients
	BytesOut uint64 `json:"bytes_out"` // response bodies sent to clients
}

// HostTraffic is GET /v1/traffic/{hostname}: one entry per minute of the
// last hour, oldest first; the last is the minute under way.
type HostTraffic struct {
	Hostname string          `json:"hostname"`
	EdgeNode string          `json:"edge_node"`
	Minutes  []TrafficMinute `json:"minutes"`
}

// TrafficMinute is one minute of a hostname's traffic.
type TrafficMinute struct {
	Time     time.Time `json:"time"` // the minute's start
	Requests uint64    `json:"requests"`
	// Status counts the answers by class: "1xx" to "5xx" (absent: none).
	Status map[string]uint64 `json:"status,omitempty"`
	// Errors counts the answers of 400 or more by code ("404", "502");
	// past 8 distinct codes in a minute, the rest count as "other".
	Errors map[string]uint64 `json:"errors,omitempty"`
	// Latency percentiles from arrival to the response header, in
	// milliseconds (from a histogram of about 20% resolution); 0 without
	// requests.
	P50MS    float64 `json:"p50_ms"`
	P90MS    float64 `json:"p90_ms"`
	P99MS    float64 `json:"p99_ms"`
	BytesIn  uint64  `json:"bytes_in"`
	BytesOut uint64  `json:"bytes_out"`
}

// Traffic returns the edge's per-hostname totals over the last hour.
func (c *Client) Traffic(ctx context.Context) (TrafficSummary, error) {
	var s TrafficSummary
	err := c.do(ctx, http.MethodGet, "/v1/traffic", nil, nil, &s)
	return s, err
}

// HostTraffic returns a route hostname's last hour, minute by minute, as
// the edge counted it ("*.example.com" for a wildcard route).
func (c *Client) HostTraffic(ctx context.Context, hostname string) (HostTraffic, error) {
	var h HostTraffic
	err := c.do(ctx, http.MethodGet, "/v1/traffic/"+url.PathEscape(hostname), nil, nil, &h)
	return h, err
}
