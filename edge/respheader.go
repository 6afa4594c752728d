package edge

import (
	"net/http"
	"strconv"
)

// The answer header comes from the connector, a party of its own (step 7
// of the edge's layers in DESIGN.md): the tunnel decoder has canonicalized
// its names (so "content-length" and "Content-Length" are one field), and
// here the fields it may not decide go.

// cleanResponseHeader removes from a connector's answer header the
// hop-by-hop fields (and those its Connection field names), Content-Length
// and Transfer-Encoding (the edge frames the answer itself, see
// setContentLength), and a forged request ID (the edge sets its own).
func cleanResponseHeader(h http.Header) {
	dropHopByHop(h) // Transfer-Encoding is one
	delete(h, "Content-Length")
	delete(h, RequestIDHeader)
}

// setContentLength gives the client's answer the length the response
// header announced, when it has one and a body may have it: net/http then
// checks the body against it, and a body that does not match breaks the
// client's connection rather than being framed as something else.
// An answer with trailers goes chunked, with no length. sent is the
// connector's Content-Length field, reused when it says the same.
func setContentLength(h http.Header, resp *http.Response, sent []string) {
	if resp.ContentLength < 0 || len(resp.Trailer) > 0 || !bodyAllowed(resp.StatusCode) {
		return
	}
	if len(sent) == 1 && isCanonicalLength(sent[0], resp.ContentLength) {
		h["Content-Length"] = sent
		return
	}
	h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
}

// bodyAllowed says whether an answer of this status may have a body
// (RFC 9110 §6.4.1).
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// isCanonicalLength reports whether s is n as strconv.FormatInt writes it.
func isCanonicalLength(s string, n int64) bool {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return err == nil && v == n
}
