package connector

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/adit-dev/adit/access/accessverify"
	"github.com/adit-dev/adit/ingress"
	"github.com/adit-dev/adit/tunnel"
)

// originRequest.access: a rule with access.required gets a verifier that
// checks the Access JWT the edge sends (Adit-Access-Jwt-Assertion or
// Cf-Access-Jwt-Assertion) against the keys the edge serves at the rule's
// teamName, for its audTag applications, before the origin sees the
// request (as cloudflared does): a misconfigured edge still does not open
// the origin. The keys are fetched on the first request and again when a
// JWT names a key not yet seen (a rotation).

// accessVerifiers returns the verifier of each rule that requires Access
// (nil for the others), and the function that stops their key fetches.
func accessVerifiers(ing *ingress.Ingress, hc *http.Client) ([]*accessverify.Verifier, context.CancelFunc, error) {
	ctx, cancel := context.WithCancel(context.Background())
	vs := make([]*accessverify.Verifier, len(ing.Rules))
	for i := range ing.Rules {
		a := ing.Rules[i].Origin.Access
		if !a.Required {
			continue
		}
		v, err := accessverify.New(ctx, accessverify.Config{TeamName: a.TeamName, AUDTags: a.AUDTag, HTTPClient: hc})
		if err != nil {
			cancel()
			return nil, nil, fmt.Errorf("connector: ingress rule %d: originRequest: access: %w", i+1, err)
		}
		vs[i] = v
	}
	return vs, cancel, nil
}

// checkAccess verifies the Access JWT of a request for host to rule i, if
// the rule requires one; it returns why the request is refused, or "".
func (r *router) checkAccess(i int, host string, h http.Header) string {
	if r.access == nil || r.access[i] == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tok := h.Get("Adit-Access-Jwt-Assertion")
	if tok == "" {
		tok = h.Get("Cf-Access-Jwt-Assertion")
	}
	if _, err := r.access[i].VerifyHost(ctx, tok, host); err != nil {
		return err.Error()
	}
	return ""
}

// refuseAccess answers an HTTP request the Access check refused: a 403
// from the connector itself (not an origin error, which the edge would
// show as a 502).
func refuseAccess(s tunnel.Stream, requestID, why string, log *slog.Logger) {
	body, _ := json.Marshal(struct {
		Error     string `json:"error"`
		RequestID string `json:"request_id,omitempty"`
	}{"refused by the connector's Access check (originRequest.access): " + why, requestID})
	body = append(body, '\n')
	rh := &tunnel.ResponseHeader{
		Status:        http.StatusForbidden,
		Header:        http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}},
		ContentLength: int64(len(body)),
	}
	writeSmallResponse(s, rh, bytes.NewReader(body), log)
}
