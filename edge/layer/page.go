package layer

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strings"
)

// RequestIDHeader carries the edge's request ID on every proxied response
// and on every page the edge answers with itself.
const RequestIDHeader = "Adit-Request-Id"

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Code}} {{.Title}} · adit</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}
code{background:#f3f3f3;padding:.1em .3em}small{color:#777}</style></head>
<body><h1>{{.Code}} · {{.Title}}</h1><p>{{.Message}}</p>
{{if .RequestID}}<p><small>Request ID: <code>{{.RequestID}}</code></small></p>{{end}}
<p><small>adit edge</small></p></body></html>
`))

// Page is an answer the edge writes itself: an error, a refusal.
type Page struct {
	Code      int
	Title     string
	Message   string
	RequestID string
}

// WritePage answers r with p: HTML for a browser (Accept names
// text/html), JSON for a client that asks for it (Accept names
// application/json), plain text for everyone else (curl, scripts).
func WritePage(w http.ResponseWriter, r *http.Request, p Page) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Cache-Control", "no-store")
	if p.RequestID != "" {
		h.Set(RequestIDHeader, p.RequestID)
	}
	accept := r.Header.Get("Accept")
	switch {
	case strings.Contains(accept, "text/html"):
		h.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(p.Code)
		page.Execute(w, p)
	case strings.Contains(accept, "application/json"):
		h.Set("Content-Type", "application/json")
		w.WriteHeader(p.Code)
		json.NewEncoder(w).Encode(struct {
			Code      int    `json:"code"`
			Title     string `json:"title"`
			Message   string `json:"message"`
			RequestID string `json:"request_id,omitempty"`
		}{p.Code, p.Title, p.Message, p.RequestID})
	default:
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(p.Code)
		fmt.Fprintf(w, "%d %s: %s\n", p.Code, p.Title, p.Message)
		if p.RequestID != "" {
			fmt.Fprintf(w, "request ID: %s\n", p.RequestID)
		}
	}
}

// Refuse answers a request a layer stops with a page naming its request
// ID. Layers count their refusals themselves, by reason.
func Refuse(w http.ResponseWriter, r *http.Request, req *Request, code int, title, message string) {
	WritePage(w, r, Page{Code: code, Title: title, Message: message, RequestID: req.ID})
}
