package controlserver

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Endpoint is an API endpoint served by another package beside the
// control API's own (certificates, Access, the shield): the edge passes
// them to NewHandler, which puts them behind the same token check and
// error handling. Pattern is a ServeMux pattern under /v1/; Handle returns
// an *APIError, a control sentinel error (control.ErrNotFound...) or any
// other error (a 500 whose details are only logged).
type Endpoint struct {
	Pattern string
	Handle  func(w http.ResponseWriter, r *http.Request) error
}

// APIError is what an endpoint fails with: Status, Code and Msg are sent
// to the caller, Err is only logged.
type APIError = httpError

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

// DecodeJSON reads a request body of one JSON value, at most 64 KiB, into
// v; its errors are *APIError.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) error { return decodeBody(w, r, v) }

// CheckDocumented compares the endpoints package pkg serves with the
// operations an OpenAPI document (docs/openapi.yaml) marks as served by it
// (x-adit-package: pkg on the path), and returns what differs, one line
// each: for that package's test that its Endpoints and the document agree.
func CheckDocumented(openapi []byte, pkg string, served []Endpoint) ([]string, error) {
	documented, err := documentedEndpoints(openapi, pkg)
	if err != nil {
		return nil, err
	}
	var problems []string
	for _, e := range served {
		if !documented[e.Pattern] {
			problems = append(problems, fmt.Sprintf("endpoint %s is not in docs/openapi.yaml (with x-adit-package: %s)", e.Pattern, pkg))
		}
		delete(documented, e.Pattern)
	}
	for op := range documented {
		problems = append(problems, fmt.Sprintf("docs/openapi.yaml describes %s, which package %s does not serve", op, pkg))
	}
	slices.Sort(problems)
	return problems, nil
}

// documentedEndpoints lists the operations ("GET /v1/certificates") of an
// OpenAPI document marked as served by package pkg.
func documentedEndpoints(openapi []byte, pkg string) (map[string]bool, error) {
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(openapi, &doc); err != nil {
		return nil, err
	}
	ops := map[string]bool{}
	for path, item := range doc.Paths {
		if item["x-adit-package"] != pkg {
			continue
		}
		for method := range item {
			if method != "parameters" && !strings.HasPrefix(method, "x-") {
				ops[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	return ops, nil
}
