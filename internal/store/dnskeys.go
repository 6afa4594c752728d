package store

// DNSTXTPrefix holds the TXT records the edges' DNS servers answer besides
// what they derive (package edgedns): today the ACME DNS-01 challenges,
// each under a lease so one left behind by a dead edge expires. A record
// is /adit/dns/txt/<fqdn>/<id>: fqdn lower-case without the final dot,
// id a digest of the text (one name may have several texts at once).
const DNSTXTPrefix = Prefix + "dns/txt/"

// DNSTXTKey is the key of the TXT record of fqdn with that id.
func DNSTXTKey(fqdn, id string) string { return DNSTXTPrefix + fqdn + "/" + id }
