package edge

import (
	"fmt"
	"html/template"
	"net/http"
	"strings"
)

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Code}} {{.Title}} · adit</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}
code{background:#f3f3f3;padding:.1em .3em}small{color:#777}</style></head>
<body><h1>{{.Code}} · {{.Title}}</h1><p>{{.Message}}</p>
{{if .RequestID}}<p><small>Request ID: <code>{{.RequestID}}</code></small></p>{{end}}
<p><small>adit edge</small></p></body></html>
`))

// writeErrorPage answers with an error page, in HTML for browsers and plain
// text for everyone else (curl, scripts).
func writeErrorPage(w http.ResponseWriter, r *http.Request, code int, title, message, requestID string) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Cache-Control", "no-store")
	if requestID != "" {
		h.Set(RequestIDHeader, requestID)
	}
	data := struct {
		Code                      int
		Title, Message, RequestID string
	}{code, title, message, requestID}
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		h.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(code)
		errorPage.Execute(w, data)
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, "%d %s: %s\n", code, title, message)
	if requestID != "" {
		fmt.Fprintf(w, "request ID: %s\n", requestID)
	}
}
