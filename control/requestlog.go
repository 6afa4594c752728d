package control

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// RequestLogEntry is one public request an edge answered for a tunnel, as
// `adit tail` shows it: a line of GET /v1/tunnels/{id}/requests.
type RequestLogEntry struct {
	Time       time.Time `json:"time"` // when the answer was complete
	TunnelID   string    `json:"tunnel_id"`
	Host       string    `json:"host"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	Status     int       `json:"status"`
	DurationMS float64   `json:"duration_ms"`
	RequestID  string    `json:"request_id"`
	ClientIP   string    `json:"client_ip,omitempty"`
	EdgeNode   string    `json:"edge_node"`
}

// RequestLogLine is one line of the request stream: an entry, or a notice
// that Dropped entries were left out because the reader fell behind.
type RequestLogLine struct {
	*RequestLogEntry
	Dropped int64 `json:"dropped,omitempty"`
}

// TailOptions filter the request stream; zero values filter nothing.
type TailOptions struct {
	// Statuses are exact codes ("404") or classes ("5xx"); an entry
	// matches any of them.
	Statuses []string
	// Hosts are hostnames; an entry matches any of them (case-insensitive).
	Hosts []string
}

// MaxTailFilters bounds how many statuses and hosts one stream filters by.
const MaxTailFilters = 32

// StatusFilter is a parsed TailOptions.Statuses: a set of codes and of
// classes (1-5).
type StatusFilter struct {
	codes   map[int]bool
	classes [6]bool
	any     bool
}

// ParseStatusFilter parses "404", "5xx" (case-insensitive) into a filter;
// none matches every status.
func ParseStatusFilter(statuses []string) (StatusFilter, error) {
	f := StatusFilter{codes: map[int]bool{}}
	if len(statuses) > MaxTailFilters {
		return f, Errorf(ErrInvalid, "status: %d filters, the limit is %d", len(statuses), MaxTailFilters)
	}
	for _, s := range statuses {
		s = strings.ToLower(strings.TrimSpace(s))
		if len(s) == 3 && s[1:] == "xx" && s[0] >= '1' && s[0] <= '5' {
			f.classes[s[0]-'0'] = true
			f.any = true
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 || n > 999 {
			return f, Errorf(ErrInvalid, "status %q: want a code (404) or a class (5xx)", s)
		}
		f.codes[n] = true
		f.any = true
	}
	return f, nil
}

// Match reports whether status passes the filter.
func (f StatusFilter) Match(status int) bool {
	if !f.any {
		return true
	}
	if f.codes[status] {
		return true
	}
	c := status / 100
	return c >= 1 && c <= 5 && f.classes[c]
}

// TailRequests streams the edge's live request log for a tunnel (NAME or
// UUID) to fn, line by line, until ctx ends, the edge ends the stream, or
// fn returns an error. It is not bound by the client's request timeout.
func (c *Client) TailRequests(ctx context.Context, tunnelRef string, opts TailOptions, fn func(RequestLogLine) error) error {
	seg, err := pathSegment("tunnel ID or name", tunnelRef)
	if err != nil {
		return err
	}
	q := url.Values{}
	if len(opts.Statuses) > 0 {
		q.Set("status", strings.Join(opts.Statuses, ","))
	}
	if len(opts.Hosts) > 0 {
		q.Set("host", strings.Join(opts.Hosts, ","))
	}
	u := c.BaseURL + "/v1/tunnels/" + seg + "/requests"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("control: tail: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "application/x-ndjson")
	hc := http.DefaultClient
	if c.HTTPClient != nil {
		cl := *c.HTTPClient
		cl.Timeout = 0 // a stream: ctx bounds it
		hc = &cl
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("control: API at %s unreachable: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return responseError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		var line RequestLogLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("control: tail: bad line from the edge: %w", err)
		}
		if line.RequestLogEntry == nil && line.Dropped == 0 {
			continue // a keepalive
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("control: tail: %w", err)
	}
	return nil
}
