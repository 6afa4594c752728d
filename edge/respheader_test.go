package edge

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"

	"github.com/adit-dev/adit/tunnel"
)

// FuzzCleanResponseHeader decodes arbitrary bytes as a connector's answer
// header and cleans it as the proxy does: no field the connector may not
// decide is left, in any case, and every field named as it was decoded
// (canonical) or invalid (net/http drops those when writing).
func FuzzCleanResponseHeader(f *testing.F) {
	for _, h := range []http.Header{
		{"content-length": {"9"}, "Content-Length": {"5"}, "X-Ok": {"1"}},
		{"transfer-encoding": {"chunked"}, "connection": {"close, x-secret"}, "x-secret": {"s"}},
		{"adit-request-id": {"forged"}, "ADIT-REQUEST-ID": {"x"}, "keep-alive": {"5"}, "te": {"trailers"}},
		{"Connection": {" X-A ,x-b,,"}, "x-a": {"1"}, "X-B": {"2"}, "upgrade": {"h2c"}, "proxy-connection": {"k"}},
		{"bad name": {"v"}, "x-\xff": {"v"}, "Trailer": {"X-T"}},
	} {
		b, _ := tunnel.AppendMessage(nil, &tunnel.ResponseHeader{Status: 200, Header: h})
		_, payload, err := tunnel.ReadFrame(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(payload)
	}
	forbidden := append([]string{"Content-Length", RequestIDHeader}, hopByHop...)
	f.Fuzz(func(t *testing.T, p []byte) {
		var rh tunnel.ResponseHeader
		if err := tunnel.DecodeMessage(p, &rh); err != nil || rh.Header == nil {
			return
		}
		var named []string // what the Connection field names
		for _, v := range rh.Header["Connection"] {
			for n := range strings.SplitSeq(v, ",") {
				named = append(named, strings.TrimSpace(n))
			}
		}
		cleanResponseHeader(rh.Header)
		for k := range rh.Header {
			if !httpguts.ValidHeaderFieldName(k) {
				continue // net/http does not write it
			}
			if k != http.CanonicalHeaderKey(k) {
				t.Errorf("name %q left uncanonical", k)
			}
			for _, bad := range append(forbidden, named...) {
				if strings.EqualFold(k, bad) {
					t.Errorf("%q left in the answer header (forbidden %q)", k, bad)
				}
			}
		}
	})
}

func TestSetContentLength(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		length  int64
		trailer http.Header
		sent    []string // the connector's Content-Length field
		want    []string
	}{
		{"known", 200, 5, nil, nil, []string{"5"}},
		{"empty", 200, 0, nil, nil, []string{"0"}},
		{"unknown", 200, -1, nil, nil, nil},
		{"with trailers", 200, 5, http.Header{"Grpc-Status": nil}, []string{"5"}, nil},
		{"no content", 204, 0, nil, []string{"0"}, nil},
		{"not modified", 304, 5, nil, []string{"5"}, nil},
		{"sent the same", 200, 1024, nil, []string{"1024"}, []string{"1024"}},
		{"sent with leading zeros", 200, 10, nil, []string{"0010"}, []string{"10"}},
		{"sent with a sign", 200, 10, nil, []string{"+10"}, []string{"10"}},
		{"sent another", 200, 10, nil, []string{"11"}, []string{"10"}},
		{"sent twice", 200, 10, nil, []string{"10", "10"}, []string{"10"}},
		{"sent empty", 200, 0, nil, []string{""}, []string{"0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			setContentLength(h, &http.Response{StatusCode: tc.status, ContentLength: tc.length, Trailer: tc.trailer}, tc.sent)
			if got := h["Content-Length"]; strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
