package control

import (
	"context"
	"net/http"
	"net/url"
)

// The shield's API (package shield serves it): typed methods of Client.

// AddIPRule stores an IP rule; the edge gives it its ID.
func (c *Client) AddIPRule(ctx context.Context, r IPRule) (IPRule, error) {
	var out IPRule
	err := c.do(ctx, http.MethodPost, "/v1/ip-rules", nil, r, &out)
	return out, err
}

// ListIPRules returns the IP rules, of one hostname if hostname is set.
func (c *Client) ListIPRules(ctx context.Context, hostname string) ([]IPRule, error) {
	var out []IPRule
	err := c.do(ctx, http.MethodGet, "/v1/ip-rules", hostQuery(hostname), nil, &out)
	return out, err
}

// DeleteIPRule deletes an IP rule by ID.
func (c *Client) DeleteIPRule(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/ip-rules/"+url.PathEscape(id), nil, nil, nil)
}

// AddRateLimit stores a rate limit; the edge gives it its ID.
func (c *Client) AddRateLimit(ctx context.Context, l RateLimit) (RateLimit, error) {
	var out RateLimit
	err := c.do(ctx, http.MethodPost, "/v1/rate-limits", nil, l, &out)
	return out, err
}

// ListRateLimits returns the rate limits, of one hostname if hostname is set.
func (c *Client) ListRateLimits(ctx context.Context, hostname string) ([]RateLimit, error) {
	var out []RateLimit
	err := c.do(ctx, http.MethodGet, "/v1/rate-limits", hostQuery(hostname), nil, &out)
	return out, err
}

// DeleteRateLimit deletes a rate limit by ID.
func (c *Client) DeleteRateLimit(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/rate-limits/"+url.PathEscape(id), nil, nil, nil)
}

// SetWAF changes a hostname's WAF setting (creating it from the defaults).
func (c *Client) SetWAF(ctx context.Context, hostname string, s WAFSettings) (WAFConfig, error) {
	var out WAFConfig
	err := c.do(ctx, http.MethodPatch, "/v1/waf/"+url.PathEscape(hostname), nil, s, &out)
	return out, err
}

// GetWAF returns a hostname's own WAF setting.
func (c *Client) GetWAF(ctx context.Context, hostname string) (WAFConfig, error) {
	var out WAFConfig
	err := c.do(ctx, http.MethodGet, "/v1/waf/"+url.PathEscape(hostname), nil, nil, &out)
	return out, err
}

// ListWAF returns every hostname's WAF setting.
func (c *Client) ListWAF(ctx context.Context) ([]WAFConfig, error) {
	var out []WAFConfig
	err := c.do(ctx, http.MethodGet, "/v1/waf", nil, nil, &out)
	return out, err
}

// DeleteWAF deletes a hostname's WAF setting (it falls back to "*"'s).
func (c *Client) DeleteWAF(ctx context.Context, hostname string) error {
	return c.do(ctx, http.MethodDelete, "/v1/waf/"+url.PathEscape(hostname), nil, nil, nil)
}

// AddWAFExclusion turns a rule off for a hostname (for paths matching e.Path).
func (c *Client) AddWAFExclusion(ctx context.Context, hostname string, e WAFExclusion) (WAFConfig, error) {
	var out WAFConfig
	err := c.do(ctx, http.MethodPost, "/v1/waf/"+url.PathEscape(hostname)+"/exclusions", nil, e, &out)
	return out, err
}

// DeleteWAFExclusion deletes an exclusion by ID.
func (c *Client) DeleteWAFExclusion(ctx context.Context, hostname, id string) (WAFConfig, error) {
	var out WAFConfig
	err := c.do(ctx, http.MethodDelete, "/v1/waf/"+url.PathEscape(hostname)+"/exclusions/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// AddWAFRules adds the operator's own SecLang rules to a hostname's WAF;
// the edge compiles them first and refuses them with the parser's error.
func (c *Client) AddWAFRules(ctx context.Context, hostname string, r WAFRules) (WAFConfig, error) {
	var out WAFConfig
	err := c.do(ctx, http.MethodPost, "/v1/waf/"+url.PathEscape(hostname)+"/rules", nil, r, &out)
	return out, err
}

// DeleteWAFRules deletes a rule file by ID.
func (c *Client) DeleteWAFRules(ctx context.Context, hostname, id string) (WAFConfig, error) {
	var out WAFConfig
	err := c.do(ctx, http.MethodDelete, "/v1/waf/"+url.PathEscape(hostname)+"/rules/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

func hostQuery(hostname string) url.Values {
	if hostname == "" {
		return nil
	}
	return url.Values{"hostname": {hostname}}
}
