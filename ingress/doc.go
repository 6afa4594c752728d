// Package ingress reads cloudflared's config.yml and turns its ingress rules into
// something a connector can ask "which origin serves this request?".
//
// It is split in three steps, each usable alone:
//
//   - [Parse] and [Load] decode a config.yml into a [Config]: the ingress rules, the
//     global and per-rule originRequest options and cloudflared's other top-level keys.
//     The file is decoded straight into Config's tagged fields (validate.go's
//     `check` tags constrain their values). Unknown keys and values of the wrong
//     type are errors that name where they are
//     (`ingress: rule 3: unknown key "servce" (line 12)`), so a typo never silently
//     changes what is served; a key cloudflared reads and adit does not is refused
//     by name with the reason (cloudflared.go).
//   - [New] validates a Config and compiles it into an [Ingress]: services are parsed
//     into a [Service], hostnames checked, path regexps compiled and each rule's
//     effective [OriginRequest] resolved (defaults, then the global originRequest, then
//     the rule's own). [FromURL] builds the single catch-all rule that --url means.
//   - [Ingress.Match] picks the first rule whose hostname and path match a request,
//     without allocating.
//
// The package does no network I/O and knows nothing about flags; the origin package
// turns a [Rule] into something that serves requests.
//
// Compatibility with cloudflared: hostnames match exactly or with a leading "*."
// wildcard (which matches any number of labels but not the bare parent domain),
// case-insensitively and ignoring a port; path is a Go regexp matched anywhere in the
// URL path (anchor it with ^ and $ to match all of it); the last rule must match every
// request. A rule whose client picks the destination (bastion, socks-proxy,
// bastionMode, proxyType socks) must have ipRules. Options adit does not honour
// yet are refused rather than ignored; New
// fails on access.required without the teamName and audTag the connector needs to
// check the Access JWT, rather than serve the origin unprotected.
package ingress
