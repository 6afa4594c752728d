package store

// The shield's records (package shield): IP rules and rate limits by ID,
// WAF settings by hostname ("*" for the default of every hostname).
const (
	IPRulesPrefix    = Prefix + "ip-rules/"
	RateLimitsPrefix = Prefix + "rate-limits/"
	WAFPrefix        = Prefix + "waf/"
)

// IPRuleKey is the key of the IP rule with that ID.
func IPRuleKey(id string) string { return IPRulesPrefix + id }

// RateLimitKey is the key of the rate limit with that ID.
func RateLimitKey(id string) string { return RateLimitsPrefix + id }

// WAFKey is the key of a hostname's WAF setting.
func WAFKey(hostname string) string { return WAFPrefix + hostname }
