package edge

import (
	"net/http"

	"github.com/adit-dev/adit/edge/layer"
)

// writeErrorPage answers with an error page (layer.WritePage: HTML for
// browsers, JSON when asked for, plain text for everyone else).
func writeErrorPage(w http.ResponseWriter, r *http.Request, code int, title, message, requestID string) {
	layer.WritePage(w, r, layer.Page{Code: code, Title: title, Message: message, RequestID: requestID})
}
